// What a coordinator call came to, for table tests: 'OK', or its error code and message.
import type { CoordError } from '../../coordinator/errors.js';

export async function outcome(f: () => unknown): Promise<string> {
  try {
    await f();
  } catch (e) {
    return `${(e as CoordError).code}: ${(e as Error).message}`;
  }
  return 'OK';
}
