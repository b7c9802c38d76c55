// One tunnel's health as the agent reads it from OVS (BFD) and the coordinator shows it:
// one type for the wire (the proto's TunnelStatus), the agent's pass result and the
// coordinator's views, so a field added to one cannot be forgotten in another.
import type { TunnelStatus } from '../proto/gen/gremesh/v1/gremesh.js';

/** the WireGuard figures of a tunnel: only with encryption wireguard */
type WireguardFields = 'wireguardHandshakeMs' | 'wireguardRxBytes' | 'wireguardTxBytes';

/** peer, remote underlay IP, OVS port, BFD state/diagnostic/flaps and whether it forwards; with encryption its WireGuard peer's figures */
export type TunnelHealth = Omit<TunnelStatus, WireguardFields> & Partial<Pick<TunnelStatus, WireguardFields>>;

/** a report from an agent of an older version may lack the later BFD fields */
export type ReportedTunnelHealth = Omit<TunnelHealth, 'bfdDiagnostic' | 'bfdFlaps'> &
  Partial<Pick<TunnelHealth, 'bfdDiagnostic' | 'bfdFlaps'>>;
