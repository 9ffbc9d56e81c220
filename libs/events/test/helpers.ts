/** eventually polls fn every `everyMs` until it is true; fails after timeoutMs naming what it waited for. */
export async function eventually(what: string, fn: () => boolean, timeoutMs = 20_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
