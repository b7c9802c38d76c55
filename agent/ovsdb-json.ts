// Pure: parse `ovs-vsctl --format=json --data=json list TABLE` output.
import type { OvsBridge, OvsInterface, OvsState } from './model.js';

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
  const portBridge = new Map<string, string>();
  const bridges: OvsBridge[] = br.map((b) => {
    const name = toScalar(b.name);
    for (const p of toSet(b.ports)) portBridge.set(p, name);
    return {
      name,
      datapathType: toScalar(b.datapath_type),
      failMode: toScalar(b.fail_mode),
      protocols: toSet(b.protocols),
      externalIds: toMap(b.external_ids),
    };
  });
  const ifacePort = new Map<string, { bridge: string | undefined; ext: Record<string, string> }>();
  for (const p of pt) {
    const uuid = toScalar(p._uuid);
    for (const i of toSet(p.interfaces)) ifacePort.set(i, { bridge: portBridge.get(uuid), ext: toMap(p.external_ids) });
  }
  const interfaces: OvsInterface[] = it.map((i) => {
    const port = ifacePort.get(toScalar(i._uuid));
    const ofport = Number(toScalar(i.ofport) || '-1');
    const mtu = Number(toScalar(i.mtu) || '0');
    const ifindex = Number(toScalar(i.ifindex) || '0');
    return {
      name: toScalar(i.name),
      bridge: port?.bridge,
      type: toScalar(i.type),
      ofport,
      options: toMap(i.options),
      externalIds: toMap(i.external_ids),
      portExternalIds: port?.ext ?? {},
      bfdStatus: toMap(i.bfd_status),
      macInUse: toScalar(i.mac_in_use),
      mtu,
      error: toScalar(i.error),
      linkState: toScalar(i.link_state),
      ifindex,
    };
  });
  return { bridges, interfaces };
}
