/** The components of the mesh; `all` runs every one of them in one process. */
export const ALL_TARGETS = ['persona', 'session', 'scheduler', 'rag', 'gateway'] as const;
