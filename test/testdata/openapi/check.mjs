// Test-only: validates OpenAPI documents with @seriousme/openapi-schema-validator
// and API responses against their schemas with Ajv (JSON Schema 2020-12).
// Driven by test/api_openapi_test.go:
//   node check.mjs <input.json>
// input: {"docs": [<path>...], "schema_doc": <path>, "responses": [{"label", "pointer", "body"}...]}
// Prints one line per problem; exits 1 if there is any.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
let problems = 0;

for (const path of input.docs) {
  const validator = new Validator();
  const res = await validator.validate(JSON.parse(readFileSync(path, "utf8")));
  if (!res.valid) {
    problems++;
    console.log(`${path}: not a valid OpenAPI document: ${JSON.stringify(res.errors)}`);
  } else {
    console.log(`${path}: valid OpenAPI ${validator.version}`);
  }
}

const spec = JSON.parse(readFileSync(input.schema_doc, "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
ajv.addSchema(spec, "api");
for (const r of input.responses) {
  const validate = ajv.compile({ $ref: "api" + r.pointer });
  if (!validate(r.body)) {
    problems++;
    console.log(`${r.label}: ${ajv.errorsText(validate.errors)}`);
  }
}
console.log(`${input.responses.length} responses checked`);
process.exit(problems ? 1 : 0);
