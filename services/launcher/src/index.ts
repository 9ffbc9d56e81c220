export { MODULES } from './modules.js';
export { ALL_TARGETS } from './modules/targets.js';
