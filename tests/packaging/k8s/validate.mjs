// Validates a directory of Kubernetes manifests (packaging/k8s) offline.
//
//   node validate.mjs [--modules DIR] MANIFEST_DIR
//   node validate.mjs [--modules DIR] --rendered FILE KUSTOMIZATION_DIR
//
// --modules: the node_modules directory holding this project's dependencies
// (default: the one beside this script), so the install can live outside
// the source tree.
// --rendered: FILE is the output of `kustomize build KUSTOMIZATION_DIR`
// (an overlay of packaging/k8s with its components); its documents are
// checked as those of a directory, beside the *.example.yaml Secret
// templates of every directory the overlay builds from (its resources and
// components, followed recursively). The listing check of
// kustomization.yaml is kustomize's own there.
//
// Every *.yaml / *.yml document must
//   - parse the same under YAML 1.1 (what kubectl reads) and 1.2 (what
//     kustomize reads): an unquoted 0400, yes or on would differ;
//   - be a kind known to kubernetes-models or @kubernetes-models/keda and
//     pass that model's validate() (the Kubernetes OpenAPI schema and
//     KEDA's CRD schema);
//   - pass the checks those schemas cannot make (below): the API server
//     silently drops unknown fields of a CRD and KEDA ignores unknown trigger
//     metadata, so a typo there would deploy without error and misbehave.
// kustomization.yaml must list every manifest of the directory except the
// *.example.yaml templates, and nothing that is not there.
//
// The agent's REDIS_URL and KEDA's triggers must agree: the *FromEnv
// variables of the triggers appear in REDIS_URL, rediss:// goes with
// enableTLS, +sentinel with redis-sentinel-streams triggers.
//
// Exit 0 when everything holds; 1 with one line per problem naming file,
// kind, name and the error; 2 on usage errors.
import { createRequire } from "node:module";
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

function usage(message) {
  process.stderr.write(
    `validate.mjs: ${message}\nusage: node validate.mjs [--modules DIR] MANIFEST_DIR\n`);
  process.exit(2);
}

let modulesDir = join(dirname(fileURLToPath(import.meta.url)), "node_modules");
let manifestDir = null;
let renderedFile = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--modules") {
    if (i + 1 >= argv.length) usage("--modules needs a directory");
    modulesDir = argv[++i];
  } else if (argv[i] === "--rendered") {
    if (i + 1 >= argv.length) usage("--rendered needs a file");
    renderedFile = argv[++i];
  } else if (argv[i].startsWith("-")) {
    usage(`unknown flag ${argv[i]}`);
  } else if (manifestDir === null) {
    manifestDir = argv[i];
  } else {
    usage("one manifest directory only");
  }
}
if (manifestDir === null) usage("no manifest directory");
if (!existsSync(manifestDir) || !statSync(manifestDir).isDirectory()) {
  usage(`not a directory: ${manifestDir}`);
}
if (!existsSync(modulesDir)) usage(`no node_modules at ${modulesDir} (run npm ci)`);
if (renderedFile !== null && (!existsSync(renderedFile) || !statSync(renderedFile).isFile())) {
  usage(`not a file: ${renderedFile}`);
}

// Resolves packages from modulesDir, wherever this script is.
const requireModule = createRequire(join(resolve(modulesDir), "..", "noop.js"));
const YAML = requireModule("yaml");

const problems = [];
function fail(file, doc, message) {
  const kind = doc?.kind ?? "?";
  const name = doc?.metadata?.name ?? "?";
  problems.push(`${file}: ${kind}/${name}: ${message}`);
}

// --- loading -------------------------------------------------------------

const KUSTOMIZATION = "kustomization.yaml";
const isTemplate = (file) => /\.example\.ya?ml$/.test(file);

const yamlFiles = (dir) => readdirSync(dir)
  .filter((f) => /\.ya?ml$/.test(f) && statSync(join(dir, f)).isFile())
  .sort();

// The directories a kustomization builds from: itself, its local directory
// resources and its components, recursively (remote URLs are skipped).
function kustomizeDirs(dir, seen = new Set()) {
  const root = resolve(dir);
  if (seen.has(root)) return seen;
  seen.add(root);
  const file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
    .map((f) => join(root, f)).find((f) => existsSync(f));
  if (!file) return seen;
  let k;
  try {
    k = YAML.parse(readFileSync(file, "utf8"));
  } catch {
    return seen; // kustomize has already rejected it
  }
  for (const entry of [...(k?.resources ?? []), ...(k?.components ?? [])]) {
    if (typeof entry !== "string" || /^[a-z]+:\/\//.test(entry) || entry.includes("?ref=")) continue;
    const path = resolve(root, entry);
    if (existsSync(path) && statSync(path).isDirectory()) kustomizeDirs(path, seen);
  }
  return seen;
}

// [{file: the name in messages, path}]: the directory's YAML files; or the
// rendered output and the templates of the directories it was built from.
const sources = [];
let files = [];
if (renderedFile === null) {
  files = yamlFiles(manifestDir);
  if (files.length === 0) usage(`no YAML files in ${manifestDir}`);
  for (const file of files) sources.push({ file, path: join(manifestDir, file) });
} else {
  sources.push({ file: `kustomize build ${basename(resolve(manifestDir))}`, path: renderedFile });
  for (const dir of kustomizeDirs(manifestDir)) {
    for (const file of yamlFiles(dir).filter(isTemplate)) {
      sources.push({ file: join(basename(dir), file), path: join(dir, file) });
    }
  }
}

function parseAll(text, version) {
  return YAML.parseAllDocuments(text, { version, prettyErrors: false });
}

const documents = []; // {file, doc}
for (const { file, path } of sources) {
  const text = readFileSync(path, "utf8");
  const as11 = parseAll(text, "1.1");
  const as12 = parseAll(text, "1.2");
  const broken = [...as11, ...as12].flatMap((d) => d.errors ?? []);
  if (!Array.isArray(as11) || broken.length > 0) {
    fail(file, null, `YAML does not parse: ${broken[0]?.message ?? "not a document stream"}`);
    continue;
  }
  as11.forEach((d, i) => {
    const doc = d.toJS();
    const doc12 = as12[i]?.toJS();
    if (doc === null || doc === undefined) return; // an empty document
    if (JSON.stringify(doc) !== JSON.stringify(doc12)) {
      fail(file, doc, "reads differently as YAML 1.1 and 1.2 (quote octal-looking numbers and yes/no/on/off)");
      return;
    }
    if (typeof doc !== "object" || Array.isArray(doc)) {
      fail(file, null, "document is not a mapping");
      return;
    }
    documents.push({ file, doc });
  });
}

// --- schema validation -----------------------------------------------------

// The model class of apiVersion/kind, or undefined. One file per kind is
// loaded, not a whole group: much faster on a cold start.
function modelClass(apiVersion, kind) {
  if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) ||
      typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return undefined;
  }
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const path = group === "keda.sh" || group === "eventing.keda.sh"
    ? `@kubernetes-models/keda/${group}/${version}`
    : group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  try {
    return requireModule(`${path}/${kind}`)[kind];
  } catch {
    return undefined;
  }
}

function schemaError(error) {
  // validate() throws an error whose message lists the failed paths.
  const details = Array.isArray(error?.errors)
    ? error.errors.map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ")
    : "";
  return details || String(error?.message ?? error);
}

for (const { file, doc } of documents) {
  if (doc.kind === "Kustomization") continue; // checked below
  if (typeof doc.metadata?.name !== "string" || doc.metadata.name === "") {
    fail(file, doc, "metadata.name is missing");
  }
  const Model = modelClass(doc.apiVersion, doc.kind);
  if (typeof Model !== "function") {
    fail(file, doc, `unknown apiVersion/kind ${doc.apiVersion}/${doc.kind}: no schema to validate against`);
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (error) {
    fail(file, doc, `schema: ${schemaError(error)}`);
  }
}

// --- checks the schemas cannot make ---------------------------------------

// Fields of KEDA's Go types (apis/keda/v1alpha1): the CRD is structural, so
// the API server drops any other field without an error.
const SCALEDJOB_SPEC = new Set([
  "jobTargetRef", "pollingInterval", "successfulJobsHistoryLimit",
  "failedJobsHistoryLimit", "rolloutStrategy", "rollout",
  "envSourceContainerName", "minReplicaCount", "maxReplicaCount",
  "scalingStrategy", "triggers"]);
const SCALING_STRATEGY = new Set([
  "strategy", "customScalingQueueLengthDeduction",
  "customScalingRunningJobPercentage", "pendingPodConditions",
  "multipleScalersCalculation"]);
const ROLLOUT = new Set(["strategy", "propagationPolicy"]);
const TRIGGER = new Set([
  "type", "name", "useCachedMetrics", "metadata", "authenticationRef", "metricType"]);
// Metadata the redis-streams scaler reads (pkg/scalers/redis_streams_scaler.go
// and the connection fields of redis_scaler.go); KEDA ignores any other key.
const REDIS_STREAMS_METADATA = new Set([
  "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
  "activationLagCount", "databaseIndex", "enableTLS", "unsafeSsl",
  ...["address", "addresses", "host", "hosts", "port", "ports", "username",
    "password"].flatMap((k) => [k, `${k}FromEnv`])]);
// redis-sentinel-streams: the same scaler with a go-redis failover client;
// the sentinel fields of redis_scaler.go's redisConnectionInfo on top.
const REDIS_SENTINEL_STREAMS_METADATA = new Set([
  ...REDIS_STREAMS_METADATA,
  ...["sentinelMaster", "sentinelUsername", "sentinelPassword"].flatMap((k) => [k, `${k}FromEnv`])]);
const REDIS_STREAMS_TYPES = new Map([
  ["redis-streams", REDIS_STREAMS_METADATA],
  ["redis-sentinel-streams", REDIS_SENTINEL_STREAMS_METADATA]]);
// TriggerAuthentication parameters the scaler reads (authParams).
const REDIS_AUTH_PARAMS = new Set([
  "address", "addresses", "host", "hosts", "port", "ports", "username", "password",
  "sentinelMaster", "sentinelUsername", "sentinelPassword",
  "tls", "ca", "cert", "Cert", "key", "keyPassword"]);

function unknownKeys(object, known) {
  return object && typeof object === "object"
    ? Object.keys(object).filter((k) => !known.has(k))
    : [];
}

// The TriggerAuthentication parameters of a trigger: parameter -> the
// template Secret's value (or "" when unknown).
function authParamsOf(trigger) {
  const params = new Map();
  const ref = trigger?.authenticationRef;
  if (!ref || (ref.kind ?? "TriggerAuthentication") !== "TriggerAuthentication") return params;
  const ta = documents.find(({ doc }) => doc.kind === "TriggerAuthentication" && doc.metadata?.name === ref.name)?.doc;
  for (const target of ta?.spec?.secretTargetRef ?? []) {
    const secret = documents.find(({ doc }) => doc.kind === "Secret" && doc.metadata?.name === target.name)?.doc;
    params.set(target.parameter, String(secret?.stringData?.[target.key] ?? ""));
  }
  for (const target of ta?.spec?.env ?? []) params.set(target.parameter, "");
  return params;
}

function checkTriggerAuthentication(file, doc) {
  for (const [i, target] of (doc.spec?.secretTargetRef ?? []).entries()) {
    if (!REDIS_AUTH_PARAMS.has(target?.parameter)) {
      fail(file, doc, `spec.secretTargetRef[${i}].parameter ${target?.parameter} is not read by the Redis scalers`);
    }
  }
}

function checkScaledJob(file, doc) {
  const spec = doc.spec ?? {};
  for (const k of unknownKeys(spec, SCALEDJOB_SPEC)) fail(file, doc, `spec.${k} is not a ScaledJob field`);
  for (const k of unknownKeys(spec.scalingStrategy, SCALING_STRATEGY)) {
    fail(file, doc, `spec.scalingStrategy.${k} is not a ScalingStrategy field`);
  }
  for (const k of unknownKeys(spec.rollout, ROLLOUT)) fail(file, doc, `spec.rollout.${k} is not a Rollout field`);
  if ((spec.rollout?.strategy ?? spec.rolloutStrategy) !== "gradual") {
    fail(file, doc, "spec.rollout.strategy must be gradual: the default (immediate) deletes running Jobs on every update");
  }
  // KEDA resolves *FromEnv from this container (envSourceContainerName,
  // else the first).
  const pod = spec.jobTargetRef?.template?.spec;
  const envContainer = (pod?.containers ?? []).find((c) => c.name === spec.envSourceContainerName) ??
    pod?.containers?.[0];
  const envOf = (name) => (envContainer?.env ?? []).find((e) => e.name === name);
  const redisUrl = envOf("REDIS_URL")?.value;
  const scheme = typeof redisUrl === "string" ? /^([a-z+]+):\/\//.exec(redisUrl)?.[1] : undefined;

  // The agent and KEDA must reach the same Redis the same way.
  function checkAgentAgrees(file, doc, where, trigger, meta, auth) {
    for (const [k, v] of Object.entries(meta)) {
      if (!k.endsWith("FromEnv")) continue;
      if (!envOf(v)) {
        fail(file, doc, `${where}.metadata.${k}: container ${envContainer?.name ?? "?"} has no variable ${v}`);
      } else if (/^(address|addresses|host|hosts|sentinelMaster)FromEnv$/.test(k) &&
                 scheme !== undefined && !redisUrl.includes(`$(${v})`)) {
        fail(file, doc, `${where}.metadata.${k}: REDIS_URL does not refer to $(${v}), so the agent and KEDA may reach different Redis servers`);
      }
    }
    if (scheme === undefined) return;
    const agentTls = scheme === "rediss" || scheme === "rediss+sentinel";
    const agentSentinel = scheme.endsWith("+sentinel");
    const kedaTls = String(meta.enableTLS ?? "false").toLowerCase() === "true" || auth.get("tls") === "enable";
    if (agentTls !== kedaTls) {
      fail(file, doc, `${where}: REDIS_URL is ${scheme}:// but the trigger has TLS ${kedaTls ? "on" : "off"} (metadata.enableTLS)`);
    }
    if (agentSentinel !== (trigger.type === "redis-sentinel-streams")) {
      fail(file, doc, `${where}: REDIS_URL is ${scheme}:// but the trigger type is ${trigger.type}`);
    }
  }

  let lagTriggers = 0;
  let pendingTriggers = 0;
  (spec.triggers ?? []).forEach((trigger, i) => {
    const where = `spec.triggers[${i}]`;
    for (const k of unknownKeys(trigger, TRIGGER)) fail(file, doc, `${where}.${k} is not a trigger field`);
    const knownMetadata = REDIS_STREAMS_TYPES.get(trigger?.type);
    if (!knownMetadata) return;
    const meta = trigger.metadata ?? {};
    const auth = authParamsOf(trigger);
    for (const k of unknownKeys(meta, knownMetadata)) {
      fail(file, doc, `${where}.metadata.${k} is not read by the ${trigger.type} scaler`);
    }
    for (const k of ["stream", "consumerGroup"]) {
      if (!meta[k]) fail(file, doc, `${where}.metadata.${k} is required here`);
    }
    if (!["address", "addresses", "host", "hosts"].some((k) => meta[k] || meta[`${k}FromEnv`] || auth.has(k))) {
      fail(file, doc, `${where}.metadata has no Redis address (address, addresses, addressFromEnv, host)`);
    }
    if (trigger.type === "redis-sentinel-streams" &&
        !meta.sentinelMaster && !meta.sentinelMasterFromEnv && !auth.has("sentinelMaster")) {
      fail(file, doc, `${where}.metadata has no sentinelMaster (or sentinelMasterFromEnv): the scaler cannot ask the sentinels for the master`);
    }
    if ("enableTLS" in meta && auth.has("tls")) {
      fail(file, doc, `${where}: enableTLS in the metadata and tls in TriggerAuthentication ${trigger.authenticationRef?.name}: KEDA refuses both`);
    }
    if ((auth.has("cert") || auth.has("Cert")) !== auth.has("key")) {
      fail(file, doc, `${where}: TriggerAuthentication ${trigger.authenticationRef?.name} has a client cert without its key, or a key without its cert`);
    }
    checkAgentAgrees(file, doc, where, trigger, meta, auth);
    if ("lagCount" in meta && "pendingEntriesCount" in meta) {
      fail(file, doc, `${where}.metadata has lagCount and pendingEntriesCount: with lagCount the scaler ignores pendingEntriesCount`);
    }
    if ("lagCount" in meta) {
      lagTriggers++;
      if (!(Number(meta.lagCount) >= 1)) fail(file, doc, `${where}.metadata.lagCount must be at least 1 (0 selects pending-entries mode)`);
    } else {
      pendingTriggers++;
    }
    if (trigger.authenticationRef?.name === undefined && !meta.passwordFromEnv) {
      fail(file, doc, `${where} has no authenticationRef: the scaler would connect without a password`);
    }
  });
  if (lagTriggers === 0 || pendingTriggers === 0) {
    fail(file, doc, "needs a redis-streams lag trigger (new jobs) and a pending-entries trigger (jobs of dead agents)");
  }
  if (lagTriggers + pendingTriggers > 1 && spec.scalingStrategy?.multipleScalersCalculation !== "sum") {
    fail(file, doc, "spec.scalingStrategy.multipleScalersCalculation must be sum: lag + pending - running Jobs is the number of pods needed");
  }
}

// Pod templates of the workload kinds, for the secret and volume checks.
function podSpecOf(doc) {
  switch (doc.kind) {
    case "ScaledJob": return doc.spec?.jobTargetRef?.template?.spec;
    case "CronJob": return doc.spec?.jobTemplate?.spec?.template?.spec;
    case "Pod": return doc.spec;
    case "Job": case "Deployment": case "StatefulSet": case "DaemonSet": case "ReplicaSet":
      return doc.spec?.template?.spec;
    default: return undefined;
  }
}

const SECRET_NAME = /(PASSWORD|TOKEN|SECRET|CREDENTIALS?|API_?KEY)$/;

function checkPodSpec(file, doc, pod) {
  if (["ScaledJob", "CronJob", "Job"].includes(doc.kind) && pod.restartPolicy !== "Never") {
    fail(file, doc, "pod restartPolicy must be Never: a restarted agent container would run a second job in the same pod");
  }
  const secretVolumes = new Set((pod.volumes ?? []).filter((v) => v.secret).map((v) => v.name));
  for (const container of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    const mounts = container.volumeMounts ?? [];
    for (const env of container.env ?? []) {
      if (SECRET_NAME.test(env.name) && (env.value !== undefined || env.valueFrom?.secretKeyRef)) {
        fail(file, doc, `container ${container.name}: ${env.name} passes a secret as an environment value; mount the Secret and use ${env.name}_FILE`);
      }
      if (/_FILE$/.test(env.name) && SECRET_NAME.test(env.name.replace(/_FILE$/, ""))) {
        const path = env.value ?? "";
        const mount = mounts.find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
        if (!mount || !secretVolumes.has(mount.name)) {
          fail(file, doc, `container ${container.name}: ${env.name}=${path} is not inside a mounted Secret volume`);
        } else if (mount.readOnly !== true) {
          fail(file, doc, `container ${container.name}: the Secret volume ${mount.name} must be mounted readOnly`);
        }
      }
    }
    for (const env of container.env ?? []) {
      if (!/^REDIS_.*_FILE$/.test(env.name) || typeof env.value !== "string") continue;
      if (!mounts.some((m) => env.value.startsWith(`${m.mountPath.replace(/\/$/, "")}/`))) {
        fail(file, doc, `container ${container.name}: ${env.name}=${env.value} is not inside a mounted volume`);
      }
    }
    const names = new Set((container.env ?? []).map((e) => e.name));
    if (names.has("REDIS_TLS_CERT_FILE") !== names.has("REDIS_TLS_KEY_FILE")) {
      fail(file, doc, `container ${container.name}: REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together`);
    }
    if (container.envFrom?.some((e) => e.secretRef)) {
      fail(file, doc, `container ${container.name}: envFrom a Secret puts secrets in environment values`);
    }
    for (const mount of mounts) {
      if (!(pod.volumes ?? []).some((v) => v.name === mount.name)) {
        fail(file, doc, `container ${container.name}: volumeMount ${mount.name} has no volume`);
      }
    }
  }
}

// Everything the manifests refer to by name must be defined among them (the
// Secret by its template).
const defined = (kind, name) =>
  documents.some(({ doc }) => doc.kind === kind && doc.metadata?.name === name);

function checkReferences(file, doc, pod) {
  for (const volume of pod?.volumes ?? []) {
    if (volume.persistentVolumeClaim && !defined("PersistentVolumeClaim", volume.persistentVolumeClaim.claimName)) {
      fail(file, doc, `volume ${volume.name}: no PersistentVolumeClaim ${volume.persistentVolumeClaim.claimName}`);
    }
    if (volume.secret && !defined("Secret", volume.secret.secretName)) {
      fail(file, doc, `volume ${volume.name}: no Secret ${volume.secret.secretName} (not even a template)`);
    }
  }
  if (doc.kind === "ScaledJob") {
    for (const trigger of doc.spec?.triggers ?? []) {
      const ref = trigger.authenticationRef;
      if (ref && (ref.kind ?? "TriggerAuthentication") === "TriggerAuthentication" && !defined("TriggerAuthentication", ref.name)) {
        fail(file, doc, `trigger ${trigger.name ?? trigger.type}: no TriggerAuthentication ${ref.name}`);
      }
    }
  }
  if (doc.kind === "TriggerAuthentication") {
    for (const ref of doc.spec?.secretTargetRef ?? []) {
      const secret = documents.find(({ doc: d }) => d.kind === "Secret" && d.metadata?.name === ref.name)?.doc;
      if (!secret) {
        fail(file, doc, `secretTargetRef ${ref.parameter}: no Secret ${ref.name} (not even a template)`);
      } else if (!(ref.key in (secret.stringData ?? {})) && !(ref.key in (secret.data ?? {}))) {
        fail(file, doc, `secretTargetRef ${ref.parameter}: Secret ${ref.name} has no key ${ref.key}`);
      }
    }
  }
  // Keys the pods read from their Secret volume must exist in the Secret.
  for (const container of pod?.containers ?? []) {
    for (const env of container.env ?? []) {
      if (!/_FILE$/.test(env.name) || typeof env.value !== "string") continue;
      const mount = (container.volumeMounts ?? []).find((m) => env.value.startsWith(`${m.mountPath.replace(/\/$/, "")}/`));
      const volume = (pod.volumes ?? []).find((v) => v.name === mount?.name && v.secret);
      if (!volume) continue;
      const secret = documents.find(({ doc: d }) => d.kind === "Secret" && d.metadata?.name === volume.secret.secretName)?.doc;
      const key = env.value.slice(mount.mountPath.replace(/\/$/, "").length + 1);
      if (secret && !(key in (secret.stringData ?? {})) && !(key in (secret.data ?? {}))) {
        fail(file, doc, `container ${container.name}: ${env.name} reads key ${key}, which Secret ${secret.metadata.name} does not have`);
      }
    }
  }
}

for (const { file, doc } of documents) {
  if (doc.kind === "ScaledJob") checkScaledJob(file, doc);
  if (doc.kind === "TriggerAuthentication") checkTriggerAuthentication(file, doc);
  const pod = podSpecOf(doc);
  if (pod) checkPodSpec(file, doc, pod);
  checkReferences(file, doc, pod);
  if (doc.kind === "Secret" && !isTemplate(file)) {
    fail(file, doc, "a Secret with values must not be committed; keep a *.example.yaml template and create the real one out of band");
  }
}

// --- kustomization.yaml ----------------------------------------------------

const kustomizations = documents.filter(({ doc }) => doc.kind === "Kustomization");
const kustomization = kustomizations.find(({ file }) => file === KUSTOMIZATION)?.doc;
for (const { file, doc } of kustomizations) {
  if (file !== KUSTOMIZATION) fail(file, doc, `a Kustomization belongs in ${KUSTOMIZATION}`);
}
if (renderedFile !== null) {
  // kustomize has read the kustomization files.
} else if (!kustomization) {
  problems.push(`${KUSTOMIZATION}: missing, or not a Kustomization`);
} else {
  const doc = { kind: "Kustomization", metadata: { name: basename(resolve(manifestDir)) } };
  if (kustomization.apiVersion !== "kustomize.config.k8s.io/v1beta1") {
    fail(KUSTOMIZATION, doc, `apiVersion ${kustomization.apiVersion} is not kustomize.config.k8s.io/v1beta1`);
  }
  const listed = kustomization.resources ?? [];
  if (!Array.isArray(listed) || listed.some((r) => typeof r !== "string")) {
    fail(KUSTOMIZATION, doc, "resources must be a list of file names");
  } else {
    const seen = new Set();
    for (const entry of listed) {
      if (seen.has(entry)) fail(KUSTOMIZATION, doc, `resources lists ${entry} twice`);
      seen.add(entry);
      if (!files.includes(entry)) fail(KUSTOMIZATION, doc, `resources lists ${entry}, which is not in the directory`);
      if (isTemplate(entry)) fail(KUSTOMIZATION, doc, `resources lists the template ${entry}; operators create the real object`);
    }
    for (const file of files) {
      if (file !== KUSTOMIZATION && !isTemplate(file) && !seen.has(file)) {
        fail(KUSTOMIZATION, doc, `${file} is not listed in resources, so it would never be deployed`);
      }
    }
  }
}

// --- report ----------------------------------------------------------------

if (problems.length > 0) {
  for (const p of problems) process.stdout.write(`FAIL ${p}\n`);
  process.stdout.write(`k8s manifests in ${manifestDir}: ${problems.length} problem(s)\n`);
  process.exit(1);
}
process.stdout.write(
  `k8s manifests in ${manifestDir}: ${documents.length} documents in ${sources.length} files valid\n`);
