// Checks the CI definitions for the public repository host, which cannot run here:
// - every .github/workflows/*.yml with GitHub's own workflow parser (@actions/workflow-parser, the parser behind the
//   Actions language service): YAML syntax, the workflow schema, expressions, then the conversion to a workflow
//   model (jobs, needs, steps), failing on any error it reports;
// - .github/dependabot.yml with ajv against eng/schemas/dependabot.schema.json (strict: unknown keys fail).
// Duplicate YAML keys are errors too. Usage: node eng/validate-ci-config.mjs   (from the repository root)
import { readFileSync, readdirSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import Ajv from 'ajv';
import { parseDocument } from 'yaml';

// The parser's dist imports its bundled schema as a bare JSON module (it is built for bundlers); Node needs the json
// import attribute for that, which this loader hook adds to .json imports.
const jsonHook = `export async function load(url, context, nextLoad) {
  return url.endsWith('.json')
    ? nextLoad(url, { ...context, importAttributes: { ...context.importAttributes, type: 'json' } })
    : nextLoad(url, context);
}`;
register('data:text/javascript,' + encodeURIComponent(jsonHook));
const { NoOperationTraceWriter, convertWorkflowTemplate, parseWorkflow } = await import('@actions/workflow-parser');

let failures = 0;
const reported = new Set();
const fail = (file, message) => {
  // The parser and the converter share one error list, so the same error can come back twice.
  if (!reported.has(`${file}\n${message}`)) {
    reported.add(`${file}\n${message}`);
    console.error(`${file}: ${message}`);
    failures++;
  }
};

function readYaml(file) {
  const document = parseDocument(readFileSync(file, 'utf8'), { uniqueKeys: true, prettyErrors: true });
  for (const problem of [...document.errors, ...document.warnings]) {
    fail(file, problem.message);
  }
  return document.toJS();
}

const workflowDir = '.github/workflows';
const workflows = readdirSync(workflowDir).filter((name) => /\.ya?ml$/.test(name)).map((name) => join(workflowDir, name));
if (workflows.length === 0) {
  fail(workflowDir, 'no workflow found');
}
for (const file of workflows) {
  const content = readFileSync(file, 'utf8');
  readYaml(file);
  const parsed = parseWorkflow({ name: file, content }, new NoOperationTraceWriter());
  for (const error of parsed.context.errors.getErrors()) {
    fail(file, error.message);
  }
  if (parsed.value === undefined) {
    fail(file, 'the workflow parser produced nothing');
    continue;
  }
  const template = await convertWorkflowTemplate(parsed.context, parsed.value);
  for (const error of template.errors ?? []) {
    fail(file, error.Message ?? String(error));
  }
  if (!template.jobs || template.jobs.length === 0) {
    fail(file, 'no jobs');
  }
}

const dependabot = '.github/dependabot.yml';
const schemaFile = 'eng/schemas/dependabot.schema.json';
// strictRequired is off only because oneOf/not name 'directory' and 'directories', which are defined one level up.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
const validate = ajv.compile(JSON.parse(readFileSync(schemaFile, 'utf8')));
if (!validate(readYaml(dependabot))) {
  for (const error of validate.errors) {
    fail(dependabot, `${error.instancePath || '/'} ${error.message} (${schemaFile}${error.schemaPath})`);
  }
}

if (failures > 0) {
  console.error(`${failures} problem(s) in the CI definitions.`);
  process.exit(1);
}
console.log(`CI definitions valid: ${workflows.join(', ')}, ${dependabot}.`);
