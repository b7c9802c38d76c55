// What the service handler builders share: the Coordinator, the watch hub, the caller
// checks, the unary wrapper, the trace broker and the server's options.
import type { Logger } from '../../common/log.js';
import type { Coordinator } from '../coordinator.js';
import type { WatchHub } from '../watch-hub.js';
import type { Pki } from '../pki.js';
import type { TraceBroker } from '../trace.js';
import type { Auth } from './auth.js';
import type { Unary } from './unary.js';

export interface ServiceDeps {
  coord: Coordinator;
  hub: WatchHub;
  auth: Auth;
  unary: Unary;
  broker: TraceBroker;
  log: Logger;
  /** the address(es) agents should dial, printed by `coordctl join` */
  advertise: () => string | Promise<string>;
  pki?: Pki;
}
