// Typed OVS operations (what the agent asks of OVSDB) and, pure, their translation into
// one RFC 7047 transaction against what the replica shows. No ovs-vsctl command lines.
export interface InterfaceSettings {
  type?: string;
  options?: Record<string, string>;
  /** merged key by key: keys of others on the same row are left alone */
  externalIds?: Record<string, string>;
  bfd?: Record<string, string>;
  mac?: string;
  mtuRequest?: number;
}

export type OvsOp =
  | {
      op: 'ensure-bridge';
      bridge: string;
      datapath: string;
      failMode: string;
      protocols: string[];
      externalIds: Record<string, string>;
    }
  /** a port with one interface; if a port of that name exists, its interface is set instead (may-exist) */
  | { op: 'add-port'; bridge: string; port: string; iface: InterfaceSettings; portExternalIds?: Record<string, string> }
  | { op: 'set-interface'; name: string; iface: InterfaceSettings }
  /** gone already: nothing to do (if-exists) */
  | { op: 'delete-port'; bridge: string; port: string };

/** What the translation needs to know of the database now. */
export interface OvsLookup {
  bridgeExists(name: string): boolean;
  /** the Port row's uuid by port name, if the port exists */
  portUuid(name: string): string | undefined;
}

const map = (m: Record<string, string>) => ['map', Object.entries(m).sort(([a], [b]) => a.localeCompare(b))];
const set = (xs: unknown[]) => ['set', xs];
const byName = (name: string) => [['name', '==', name]];

function ifaceRow(s: InterfaceSettings): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  if (s.type !== undefined) row.type = s.type;
  if (s.options !== undefined) row.options = map(s.options);
  if (s.bfd !== undefined) row.bfd = map(s.bfd);
  if (s.mac !== undefined) row.mac = s.mac;
  if (s.mtuRequest !== undefined) row.mtu_request = s.mtuRequest;
  return row;
}

/** external_ids merged key by key: delete our keys, then insert them with their values */
function mergeIds(table: string, name: string, ids: Record<string, string> | undefined): object[] {
  if (!ids || Object.keys(ids).length === 0) return [];
  return [
    {
      op: 'mutate',
      table,
      where: byName(name),
      mutations: [
        ['external_ids', 'delete', set(Object.keys(ids).sort())],
        ['external_ids', 'insert', map(ids)],
      ],
    },
  ];
}

/**
 * Pure: the typed operations as one OVSDB transaction. Rows are matched by name; new
 * rows refer to each other by named-uuid. Deleting a port removes it from its bridge
 * (Port and Interface rows are not root rows: OVSDB drops them with it).
 */
export function toTransaction(ops: OvsOp[], db: OvsLookup): object[] {
  const out: object[] = [];
  const madeBridges = new Set<string>();
  const madePorts = new Set<string>();
  let n = 0;
  for (const o of ops) {
    if (o.op === 'ensure-bridge') {
      const settings = { datapath_type: o.datapath, fail_mode: o.failMode, protocols: set(o.protocols) };
      if (db.bridgeExists(o.bridge) || madeBridges.has(o.bridge)) {
        out.push({ op: 'update', table: 'Bridge', where: byName(o.bridge), row: settings });
        out.push(...mergeIds('Bridge', o.bridge, o.externalIds));
        continue;
      }
      const i = `i${n}`;
      const p = `p${n}`;
      const b = `b${n++}`;
      out.push(
        { op: 'insert', table: 'Interface', row: { name: o.bridge, type: 'internal' }, 'uuid-name': i },
        { op: 'insert', table: 'Port', row: { name: o.bridge, interfaces: ['named-uuid', i] }, 'uuid-name': p },
        {
          op: 'insert',
          table: 'Bridge',
          row: { name: o.bridge, ports: ['named-uuid', p], external_ids: map(o.externalIds), ...settings },
          'uuid-name': b,
        },
        {
          op: 'mutate',
          table: 'Open_vSwitch',
          where: [],
          mutations: [['bridges', 'insert', set([['named-uuid', b]])]],
        },
      );
      madeBridges.add(o.bridge);
    } else if (o.op === 'add-port') {
      if (db.portUuid(o.port) || madePorts.has(o.port)) {
        const row = ifaceRow(o.iface);
        if (Object.keys(row).length) out.push({ op: 'update', table: 'Interface', where: byName(o.port), row });
        out.push(...mergeIds('Interface', o.port, o.iface.externalIds));
        out.push(...mergeIds('Port', o.port, o.portExternalIds));
        continue;
      }
      const i = `i${n}`;
      const p = `p${n++}`;
      out.push(
        {
          op: 'insert',
          table: 'Interface',
          row: { name: o.port, ...ifaceRow(o.iface), external_ids: map(o.iface.externalIds ?? {}) },
          'uuid-name': i,
        },
        {
          op: 'insert',
          table: 'Port',
          row: { name: o.port, interfaces: ['named-uuid', i], external_ids: map(o.portExternalIds ?? {}) },
          'uuid-name': p,
        },
        {
          op: 'mutate',
          table: 'Bridge',
          where: byName(o.bridge),
          mutations: [['ports', 'insert', set([['named-uuid', p]])]],
        },
      );
      madePorts.add(o.port);
    } else if (o.op === 'set-interface') {
      const row = ifaceRow(o.iface);
      if (Object.keys(row).length) out.push({ op: 'update', table: 'Interface', where: byName(o.name), row });
      out.push(...mergeIds('Interface', o.name, o.iface.externalIds));
    } else {
      const uuid = db.portUuid(o.port);
      if (!uuid) continue;
      out.push({
        op: 'mutate',
        table: 'Bridge',
        where: byName(o.bridge),
        mutations: [['ports', 'delete', set([['uuid', uuid]])]],
      });
    }
  }
  return out;
}
