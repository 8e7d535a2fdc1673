// Validates azure.yaml against the Azure Developer CLI schema (JSON Schema draft 2019-09) with ajv.
// Usage: node eng/validate-azure-yaml.mjs <azure.yaml> <azure.yaml.json>
// The schema's remote $refs (only the azure.ai.* and microsoft.foundry hosts use them) cannot be fetched on a
// machine without internet, so they are registered as empty schemas, as shared/schemas/README.md allows.
import { readFileSync } from 'node:fs';
import Ajv2019 from 'ajv/dist/2019.js';
import { parseDocument } from 'yaml';

const [yamlPath, schemaPath] = process.argv.slice(2);
if (!yamlPath || !schemaPath) {
  console.error('usage: node eng/validate-azure-yaml.mjs <azure.yaml> <azure.yaml.json>');
  process.exit(2);
}

const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));

function remoteRefs(node, found = new Set()) {
  if (Array.isArray(node)) {
    node.forEach((item) => remoteRefs(item, found));
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && /^https?:\/\//.test(value)) {
        found.add(value.split('#')[0]);
      } else {
        remoteRefs(value, found);
      }
    }
  }
  return found;
}

// strict: false because the schema carries annotation keywords ajv does not know (they do not affect validation).
const ajv = new Ajv2019({ allErrors: true, strict: false });
for (const url of remoteRefs(schema)) {
  ajv.addSchema({}, url);
}
const validate = ajv.compile(schema);

// Duplicate keys and YAML syntax problems are errors too, not silently resolved.
const document = parseDocument(readFileSync(yamlPath, 'utf8'), { uniqueKeys: true, prettyErrors: true });
const problems = [...document.errors, ...document.warnings];
if (problems.length > 0) {
  for (const problem of problems) {
    console.error(`${yamlPath}: ${problem.message}`);
  }
  process.exit(1);
}

const data = document.toJS();
if (!validate(data)) {
  for (const error of validate.errors) {
    console.error(`${yamlPath}${error.instancePath || '/'}: ${error.message} (${error.schemaPath})`);
  }
  process.exit(1);
}
