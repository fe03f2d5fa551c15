// Lints Dockerfiles with npm dockerfile-utils (the validator behind the
// Dockerfile language server): syntax, unknown instructions and flags, bad
// arguments, and the rules raised to errors below.
//
//   node lint.mjs --modules NODE_MODULES DOCKERFILE...
//
// Prints every diagnostic as FILE:LINE:COLUMN: SEVERITY: MESSAGE and exits 1
// when any is an error, 0 otherwise (warnings are printed, not fatal), 2 on
// a usage error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
if (args.length < 3 || args[0] !== "--modules") {
  console.error("usage: node lint.mjs --modules NODE_MODULES DOCKERFILE...");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(args[1]), "noop.js"));
const { validate, ValidationSeverity } = require("dockerfile-utils");

// Rules that are warnings or off by default but mean a broken or misleading
// image here: a second CMD/ENTRYPOINT/HEALTHCHECK silently replaces the
// first, a JSON array in single quotes runs as a shell string, a relative
// WORKDIR depends on the base image.
const settings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

// LSP DiagnosticSeverity.
const severityName = { 1: "error", 2: "warning", 3: "information", 4: "hint" };
let errors = 0;
for (const file of args.slice(2)) {
  const diagnostics = validate(readFileSync(file, "utf8"), settings);
  for (const d of diagnostics) {
    const severity = d.severity ?? 1;
    if (severity === 1) errors++;
    console.log(`${file}:${d.range.start.line + 1}:${d.range.start.character + 1}: ` +
      `${severityName[severity] ?? severity}: ${d.message}`);
  }
}
if (errors > 0) {
  console.log(`${errors} error(s)`);
  process.exit(1);
}
console.log(`${args.length - 2} Dockerfile(s) clean of errors`);
