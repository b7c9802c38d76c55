// Pure: OVSDB's JSON values (RFC 7047 §5.1: atoms, ["set", ...], ["map", ...]) and
// the agent's view of OVS built from replicated rows.
import type { OvsBridge, OvsInterface, OvsState } from '../../model.js';

type Atom = string | number | boolean | ['uuid', string] | ['named-uuid', string];
type Datum = Atom | ['set', Atom[]] | ['map', [Atom, Atom][]];
interface Table {
  headings: string[];
  data: Datum[][];
}

const atom = (a: Atom): string => (Array.isArray(a) ? a[1] : String(a));

export function toMap(d: Datum | undefined): Record<string, string> {
  if (Array.isArray(d) && d[0] === 'map')
    return Object.fromEntries((d[1] as [Atom, Atom][]).map(([k, v]) => [atom(k), atom(v)]));
  return {};
}

export function toSet(d: Datum | undefined): string[] {
  if (d === undefined) return [];
  if (Array.isArray(d) && d[0] === 'set') return (d[1] as Atom[]).map(atom);
  return [atom(d as Atom)];
}

export function toScalar(d: Datum | undefined): string {
  const s = toSet(d);
  return s[0] ?? '';
}

export function rows(t: Table): Record<string, Datum>[] {
  return t.data.map((r) => Object.fromEntries(t.headings.map((h, i) => [h, r[i]!])));
}

/**
 * Parses the three tables printed by one `ovs-vsctl --format=json --data=json`
 * call (list Bridge, list Port, list Interface): one JSON object per line.
 */
export function parseOvsState(stdout: string): OvsState {
  const tables = stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Table);
  if (tables.length !== 3) throw new Error(`expected 3 tables from ovs-vsctl, got ${tables.length}`);
  const [br, pt, it] = tables.map(rows) as [Record<string, Datum>[], Record<string, Datum>[], Record<string, Datum>[]];
  return stateFromRows(br, pt, it);
}

/** The agent's view of OVS from replicated rows of Bridge, Port and Interface. */
export function stateFromRows(
  bridgeRows: Record<string, unknown>[],
  portRows: Record<string, unknown>[],
  ifaceRows: Record<string, unknown>[],
): OvsState {
  const d = (r: Record<string, unknown>, c: string) => r[c] as Datum | undefined;
  const portBridge = new Map<string, string>();
  const bridges: OvsBridge[] = bridgeRows.map((b) => {
    const name = toScalar(d(b, 'name'));
    for (const p of toSet(d(b, 'ports'))) portBridge.set(p, name);
    return {
      name,
      datapathType: toScalar(d(b, 'datapath_type')),
      failMode: toScalar(d(b, 'fail_mode')),
      protocols: toSet(d(b, 'protocols')),
      externalIds: toMap(d(b, 'external_ids')),
    };
  });
  const ifacePort = new Map<string, { bridge: string | undefined; ext: Record<string, string> }>();
  for (const p of portRows) {
    const uuid = toScalar(d(p, '_uuid'));
    for (const i of toSet(d(p, 'interfaces')))
      ifacePort.set(i, { bridge: portBridge.get(uuid), ext: toMap(d(p, 'external_ids')) });
  }
  const interfaces: OvsInterface[] = ifaceRows.map((i) => {
    const port = ifacePort.get(toScalar(d(i, '_uuid')));
    return {
      name: toScalar(d(i, 'name')),
      bridge: port?.bridge,
      type: toScalar(d(i, 'type')),
      ofport: Number(toScalar(d(i, 'ofport')) || '-1'),
      options: toMap(d(i, 'options')),
      externalIds: toMap(d(i, 'external_ids')),
      portExternalIds: port?.ext ?? {},
      bfdStatus: toMap(d(i, 'bfd_status')),
      macInUse: toScalar(d(i, 'mac_in_use')),
      mtu: Number(toScalar(d(i, 'mtu')) || '0'),
      error: toScalar(d(i, 'error')),
      linkState: toScalar(d(i, 'link_state')),
      ifindex: Number(toScalar(d(i, 'ifindex')) || '0'),
    };
  });
  return { bridges, interfaces };
}
