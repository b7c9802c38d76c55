// The OpenFlow pipeline's tables and priorities, by name, in one place (as Antrea's
// pipeline.go): the flows are written with these names, and trace reads them back.
//   classify      local port -> reg6=network key; tunnel+key -> reg6, reg7=1
//   portSecurity  a container sends only from its own MAC and IP (ARP too)
//   forward       ARP and ND responders, known MACs, flooding, unknown unicast
//   ndReply       the ND responder's second half: the target's link-layer address, back out
//   policy        classify the source IP into a group register (reg2), send through conntrack
//   policyRules   allow/deny by the group registers (reg2, reg3) and L4
//   deliver       output to the local port
export const TABLES = {
  classify: 0,
  portSecurity: 10,
  forward: 20,
  ndReply: 25,
  policy: 30,
  policyRules: 40,
  deliver: 50,
} as const;
export type TableName = keyof typeof TABLES;

/** the table names as trace and status print them */
export const TABLE_TITLES: Record<TableName, string> = {
  classify: 'classify',
  portSecurity: 'port security',
  forward: 'forward',
  ndReply: 'neighbour advertisement',
  policy: 'policy: source group, conntrack',
  policyRules: 'policy rules',
  deliver: 'deliver',
};

/** table number -> printed name */
export const TABLE_NAMES: Record<number, string> = Object.fromEntries(
  (Object.keys(TABLES) as TableName[]).map((t) => [TABLES[t], TABLE_TITLES[t]]),
);

/** the priorities the pipeline uses, by what they are for */
export const PRIORITY = {
  /** forward: the bridge answers an ARP request for an address it knows */
  arpResponder: 110,
  /** classify and port security by in_port; forward to a local MAC */
  port: 100,
  /** forward: a remote endpoint's MAC to its peer's tunnel */
  remoteMac: 90,
  /** forward: broadcast/multicast */
  flood: 50,
  /** forward: unknown unicast from a local port to every tunnel */
  unknownUnicast: 40,
  /** every table's last flow */
  miss: 0,
} as const;

/** register 6 holds the frame's network key, register 7 is 1 for a frame that came from a tunnel */
export const REG_NETWORK = 'NXM_NX_REG6';
export const REG_FROM_TUNNEL = 'NXM_NX_REG7';
/** register 2 holds the source's policy group, register 3 the destination's (policed networks) */
export const REG_SRC_GROUP = 'NXM_NX_REG2';
export const REG_DST_GROUP = 'NXM_NX_REG3';
