export {
  createClient,
  type AliasHistory,
  type AliasHistoryOptions,
  type AliasList,
  type ClientOptions,
  type CoalesceClient,
  type ModelRef,
  type PageOptions,
  type PredictCacheMode,
  type Prediction,
  type PredictOptions,
  type PutAliasRequest,
  type ResultsDownload,
  type ResultsFormat,
  type WaitOptions,
} from "./client.ts";
export { buildCsvUploadQuery, type CsvUploadOptions } from "./csv-upload.ts";
export {
  CoalesceApiError,
  CoalesceConnectionError,
  CoalesceError,
  CoalesceResponseError,
  CoalesceTimeoutError,
} from "./errors.ts";
