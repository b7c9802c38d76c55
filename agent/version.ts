// The agent's version, from package.json (dist/agent/version.js -> ../../package.json).
import * as fs from 'node:fs';

function read(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
}

export const AGENT_VERSION = read();
