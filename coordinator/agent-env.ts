// Pure: what `coordctl join NAME -o env` prints, the agent's systemd EnvironmentFile.
/** Pure: the agent's environment file (systemd EnvironmentFile=, /etc/default/gremesh-agent) for a join. */
export function agentEnvFile(j: {
  coordinator: string;
  name: string;
  token: string;
  caHash: string;
  underlayIp?: string;
}): string {
  const lines = [
    `# gremesh-agent for ${j.name}: install as /etc/default/gremesh-agent, mode 0600 (it holds a one-time join token)`,
    `GREMESH_COORDINATOR=${j.coordinator}`,
    `GREMESH_NAME=${j.name}`,
    `GREMESH_JOIN_TOKEN=${j.token}`,
  ];
  if (j.caHash) lines.push(`GREMESH_CA_HASH=${j.caHash}`);
  else lines.push('GREMESH_INSECURE=1');
  if (j.underlayIp) lines.push(`GREMESH_UNDERLAY_IP=${j.underlayIp}`);
  return `${lines.join('\n')}\n`;
}
