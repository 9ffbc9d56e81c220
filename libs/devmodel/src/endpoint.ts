/** LlmEndpoint is an OpenAI-compatible chat endpoint: the configured default or the development model. */
export interface LlmEndpoint {
  baseUrl: string;
  apiKey: string;
  model: string;
  /** True when this is the built-in development model, not a real language model. */
  development: boolean;
}
