'use strict';
// Loads the native addon: NAPI_RS_NATIVE_LIBRARY_PATH when set, else mehr.<platform>.node
// beside this file (built by scripts/build-native.mjs at install).
const { join } = require('node:path');
const { platformTag } = require('./lib/platform.cjs');

const path = process.env.NAPI_RS_NATIVE_LIBRARY_PATH || join(__dirname, `mehr.${platformTag()}.node`);
try {
  module.exports = require(path);
} catch (error) {
  throw new Error(`@mehr/sdk: cannot load the native addon ${path} (${error.message}); build it with \`npm run build:native\` in the package folder`, { cause: error });
}
