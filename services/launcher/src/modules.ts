import { gatewayModule } from '@chat/gateway';
import { personaModule } from '@chat/persona-service';
import { ragModule } from '@chat/rag-service';
import type { ModuleDef } from '@chat/runtime';
import { schedulerModule } from '@chat/scheduler-service';
import { sessionModule } from '@chat/session-service';
import { busModule } from './modules/bus.js';
import { databaseModule } from './modules/database.js';
import { llmModule } from './modules/llm.js';
import { metricsModule } from './modules/metrics.js';

/** Every module of the product, infrastructure first; the runtime picks what the targets need. */
export const MODULES: readonly ModuleDef[] = [
  metricsModule,
  databaseModule,
  busModule,
  llmModule,
  personaModule,
  sessionModule,
  ragModule,
  schedulerModule,
  gatewayModule,
] as ModuleDef[];
