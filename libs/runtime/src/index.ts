export { ALL, describeTargets, parseTargets, startOrder } from './graph.js';
export { defineModule, type ModuleContext, type ModuleDef, type Running } from './module.js';
export { ModuleStartError, Runtime, type RuntimeOptions } from './runtime.js';
