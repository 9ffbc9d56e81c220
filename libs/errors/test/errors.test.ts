import assert from 'node:assert/strict';
import { AppError, Code, codeFromHttpStatus, codeName, errorBody, httpStatus, toAppError } from '../src/index.js';

describe('errors', () => {
  describe('httpStatus', () => {
    const cases: Array<[AppError, number]> = [
      [AppError.invalid('bad'), 400],
      [AppError.unauthenticated(), 401],
      [new AppError(Code.PermissionDenied, 'no'), 403],
      [AppError.notFound('session', 'x'), 404],
      [new AppError(Code.AlreadyExists, 'dup'), 409],
      [AppError.tooLarge('too big', 10), 413],
      [new AppError(Code.FailedPrecondition, 'unusable'), 422],
      [new AppError(Code.ResourceExhausted, 'slow down'), 429],
      [AppError.unavailable('down'), 503],
      [new AppError(Code.DeadlineExceeded, 'slow'), 504],
      [AppError.internal(new Error('boom')), 500],
    ];
    for (const [err, status] of cases) {
      it(`maps ${Code[err.code]}/${err.reason} to HTTP ${status}`, () => assert.equal(httpStatus(err), status));
    }
  });

  describe('errorBody', () => {
    it('renders code, message and details for client errors', () => {
      assert.deepEqual(errorBody(AppError.invalid('the persona is not valid', { name: 'is required' })), {
        error: { code: 'invalid_argument', message: 'the persona is not valid', details: { fields: { name: 'is required' } } },
      });
    });
    it('never reveals the cause of an internal error', () => {
      const body = errorBody(AppError.internal(new Error('password=hunter2 at db.ts:12')));
      assert.deepEqual(body, { error: { code: 'internal', message: 'internal error', details: {} } });
      assert.ok(!JSON.stringify(body).includes('hunter2'));
    });
  });

  describe('toAppError', () => {
    it('keeps an AppError as it is', () => {
      const e = AppError.notFound('persona', 'p1');
      assert.equal(toAppError(e), e);
    });
    it('turns an unknown throw into INTERNAL with the cause kept for logs', () => {
      const cause = new TypeError('x is undefined');
      const e = toAppError(cause);
      assert.equal(e.code, Code.Internal);
      assert.equal(e.cause, cause);
    });
  });

  it('names codes in snake_case', () => {
    assert.equal(codeName(Code.InvalidArgument), 'invalid_argument');
    assert.equal(codeName(Code.NotFound), 'not_found');
    assert.equal(codeName(Code.Unauthenticated), 'unauthenticated');
  });

  it('maps upstream HTTP statuses back to codes', () => {
    assert.equal(codeFromHttpStatus(429), Code.ResourceExhausted);
    assert.equal(codeFromHttpStatus(503), Code.Unavailable);
    assert.equal(codeFromHttpStatus(404), Code.NotFound);
    assert.equal(codeFromHttpStatus(500), Code.Internal);
  });
});
