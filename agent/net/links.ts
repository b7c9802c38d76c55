// createLinkDriver: the link driver for this host: rtnetlink in process when a netlink
// socket opens here (probed once), otherwise the `ip`/`ethtool` one.
import type { Runner } from '../../common/exec.js';
import { IpLinkDriver, type LinkDriver } from './link-driver.js';
import { NetlinkLinkDriver } from './netlink/driver.js';
import { NetlinkSocket } from './netlink/socket.js';

export function createLinkDriver(run: Runner, log?: (msg: string) => void): LinkDriver {
  try {
    NetlinkSocket.open().close();
    log?.('links: rtnetlink in process');
    return new NetlinkLinkDriver(run);
  } catch (e) {
    log?.(`links: ip/ethtool (netlink unavailable: ${(e as Error).message})`);
    return new IpLinkDriver(run);
  }
}
