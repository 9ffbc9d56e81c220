export { Code, codeName } from './code.js';
export { AppError, isAppError, toAppError, type AppErrorOptions, type ErrorDetails } from './app-error.js';
export { httpStatus, errorBody, codeFromHttpStatus, type ErrorBody } from './http.js';
