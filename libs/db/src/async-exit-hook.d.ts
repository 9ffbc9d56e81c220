// async-exit-hook ships no types; this is the part embedded.ts uses.
declare module 'async-exit-hook' {
  interface ExitHook {
    unhookEvent(event: string): void;
  }
  const exitHook: ExitHook;
  export default exitHook;
}
