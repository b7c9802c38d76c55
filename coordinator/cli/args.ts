// coordctl's flags, its --help text, and the parse of the global flags every command shares.
import { parse, outputFormat, UsageError, type Options, type Parsed } from '../../common/cli.js';
import { parseDuration } from '../config.js';

export const HELP = `coordctl: manage a gremesh coordinator

Usage: coordctl [--coordinator ADDR:PORT] [-o table|json] COMMAND

Commands:
  join NAME [--ttl DUR] [--underlay-ip IP]   admit host NAME: print a one-time join token and
                                             the gremesh-agent command line to run on it;
                                             with -o env, exactly the lines of NAME's
                                             /etc/default/gremesh-agent (keep it mode 0600:
                                             it holds the token)
  leave NAME                                 remove NAME everywhere; its slices are quarantined
  hosts                                      name, underlay IP, slices, state, last seen, version
  host NAME                                  one host, with its tunnels and attach errors
  networks                                   networks with CIDR, slice size, GRE key, MTU,
                                             isolation and rule count
  network create NAME --cidr CIDR --host-prefix-len N [--mtu N] [--isolation none|groups]
         [--ipv6-cidr PREFIX [--ipv6-host-prefix-len N]]
                                             dual-stack: each host also gets the IPv6 slice
                                             of the same index (/64 by default)
  network update NAME --isolation none|groups
                                             none (default): every container reaches every
                                             other unless a deny rule says otherwise; groups:
                                             containers reach only their own group
                                             (label gremesh.group) and what allow rules open
  network delete NAME
  policy allow|deny --network N --from GROUP|any|outside --to GROUP|any
         [--proto tcp|udp|icmp] [--port P[-Q]]
                                             add a rule (deny wins over allow; replies of an
                                             allowed connection pass); the same rule twice
                                             is one rule
  policy list [--network N]                  rules by network, with their ids
  policy delete ID                           remove a rule (e.g. r7)
  rotate-keys [HOST]                         encryption wireguard: new keys for HOST (default
                                             every host), without losing packets
  status                                     revision, hosts with tunnel health, networks
  token list                                 join tokens and their state
  token revoke ID                            revoke a join token (ID is the part before the dot)
  trace SRC DST [--proto icmp|tcp|udp] [--port N] [--src-ip IP]
                                             why can (not) SRC reach DST: the packet through
                                             each host's bridge, table by table, and a verdict
                                             per host. SRC: a container (name or id) or a
                                             gremesh IP; DST: the same, or outside:IP;
                                             --src-ip: SRC sends with another source address
  events [--since DUR] [--follow]            hosts joined/left/down/up, tunnels down/up (with
                                             BFD's diagnostic), failed attachments
  names [NETWORK]                            every container name, alias and hostname the
                                             networks' resolvers answer: name, addresses
                                             (round-robin), host and container of each;
                                             "shared" where several containers hold one
                                             (trace names the policy rule that decided)

Flags:
  --coordinator ADDR:PORT   default $GREMESH_COORDINATOR or 127.0.0.1:7420; several comma-
                            separated: a call goes to the next when one cannot be reached
  --cert FILE --key FILE --ca FILE
                            the admin client certificate, its key, and the coordinator CA
                            (default DATA_DIR/pki/admin.crt, admin.key, ca.crt, with DATA_DIR
                            $GREMESH_DATA_DIR or /var/lib/gremesh-coordinator; env GREMESH_CERT,
                            GREMESH_KEY, GREMESH_CA)
  --insecure                talk plaintext to a coordinator started with --insecure
  -o, --output table|json   output format (default table; join also takes env)
  --timeout DUR             per-call deadline (default 10s)
`;

/** every flag any command takes (parsed once, wherever it stands on the line) */
export const FLAGS: Options = {
  coordinator: { type: 'string' },
  output: { type: 'string', short: 'o' },
  timeout: { type: 'string' },
  ttl: { type: 'string' },
  'underlay-ip': { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  insecure: { type: 'boolean' },
  cidr: { type: 'string' },
  'host-prefix-len': { type: 'string' },
  'ipv6-cidr': { type: 'string' },
  'ipv6-host-prefix-len': { type: 'string' },
  mtu: { type: 'string' },
  isolation: { type: 'string' },
  network: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  proto: { type: 'string' },
  port: { type: 'string' },
  since: { type: 'string' },
  'src-ip': { type: 'string' },
  follow: { type: 'boolean' },
};

export type Values = Parsed['values'];

export type GlobalArgs =
  | { help: true; code: number }
  | {
      help: false;
      values: Values;
      cmd: string;
      args: string[];
      fmt: string;
      addr: string;
      timeoutS: number;
    };

/** The command line: --help (or nothing), else the command, its arguments and the global flags checked. */
export function parseGlobal(argv: string[], env: NodeJS.ProcessEnv = process.env): GlobalArgs {
  const { values, positionals } = parse(argv, FLAGS);
  if (values.help || positionals.length === 0) return { help: true, code: values.help ? 0 : 2 };
  const fmt = outputFormat(values.output, positionals[0] === 'join' ? ['table', 'json', 'env'] : ['table', 'json']);
  const addr = (values.coordinator as string | undefined) ?? env.GREMESH_COORDINATOR ?? '127.0.0.1:7420';
  const timeoutS = parseDuration((values.timeout as string | undefined) ?? '10s');
  if (!timeoutS) throw new UsageError('--timeout must be a duration such as 10s');
  const [cmd, ...args] = positionals;
  return { help: false, values, cmd: cmd!, args, fmt, addr, timeoutS };
}

/** exactly n arguments after the command, else its usage line */
export function want(args: string[], n: number, usage: string): void {
  if (args.length !== n) throw new UsageError(`usage: coordctl ${usage}`);
}

/** a duration flag (seconds), 0 when absent; `what` finishes the error message */
export function durationFlag(values: Values, flag: string, what: string): number {
  if (values[flag] === undefined) return 0;
  const d = parseDuration(values[flag] as string);
  if (!d) throw new UsageError(`--${flag} must be a duration such as ${what}, got "${values[flag]}"`);
  return d;
}
