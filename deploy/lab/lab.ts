// The lab's side effects: namespaces, veths, per-host ovsdb-server/ovs-vswitchd and
// dockerd. Everything created is recorded in DIR/state.json as soon as it exists, so
// `down` removes exactly that, also after a crash halfway through `up`.
// This module is the lab's one entry point for importers (the CLI, the demo, the tests
// and benches); the work lives in files by job, re-exported here under the same names.
export {
  LabError,
  DEFAULT_DIR,
  statePath,
  readState,
  nodeByName,
  nsPrefix,
  recordProcess,
  requireState,
  recordNetns,
  type ProcRecord,
  type LabState,
  type DockerMode,
  type Progress,
} from './state.js';
export { REQUIRED_TOOLS, checkTools } from './tools.js';
export { alive, isOurs, stopPids, spawnInNode } from './processes.js';
export { up, type UpOptions } from './up.js';
export { startEtcdMember, etcdHealth } from './etcd.js';
export { startOvsdb, startVswitchd, restartOvs, restartVswitchd } from './ovs-daemons.js';
export { dockerNetworkFlags, startDockerd, startMountNs, restartDockerd } from './dockerd.js';
export { down, sweep, crashHost, type DownOptions, type SweepOptions, type SweepResult } from './teardown.js';
export { status, type NodeStatus } from './status.js';
