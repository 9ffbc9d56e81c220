import { defineConfig, env, z } from '@chat/config';
import { startDevModel, type LlmEndpoint } from '@chat/devmodel';
import { defineModule } from '@chat/runtime';

/** The default OpenAI-compatible endpoint; unset LLM_BASE_URL means the built-in development model. */
export const llmConfig = defineConfig({
  LLM_BASE_URL: env.url().optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().optional(),
});

/** llmModule provides the default LLM endpoint, starting the development model when none is configured. */
export const llmModule = defineModule<LlmEndpoint>({
  name: 'llm',
  config: [llmConfig],
  async init(ctx) {
    const cfg = ctx.config(llmConfig);
    if (cfg.LLM_BASE_URL) {
      if (!cfg.LLM_MODEL) throw new Error('LLM_MODEL is required when LLM_BASE_URL is set');
      return { value: { baseUrl: cfg.LLM_BASE_URL, apiKey: cfg.LLM_API_KEY ?? 'none', model: cfg.LLM_MODEL, development: false } };
    }
    const dev = await startDevModel({ host: '127.0.0.1', port: 0, logger: ctx.logger });
    ctx.logger.warn('no LLM configured: replies come from the built-in DEVELOPMENT model, not a language model; set LLM_BASE_URL, LLM_API_KEY and LLM_MODEL for real answers', {
      base_url: dev.endpoint.baseUrl,
    });
    return { value: dev.endpoint, stop: () => dev.stop() };
  },
});
