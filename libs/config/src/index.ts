export { ConfigError, defineConfig, env, loadConfig, type ConfigOf, type ConfigSlice, type Env, type EnvShape } from './config.js';
export { z } from 'zod';
