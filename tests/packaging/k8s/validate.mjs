// Validates a directory of Kubernetes manifests (packaging/k8s) offline.
//
//   node validate.mjs [--modules DIR] MANIFEST_DIR
//
// --modules: the node_modules directory holding this project's dependencies
// (default: the one beside this script), so the install can live outside
// the source tree.
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
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--modules") {
    if (i + 1 >= argv.length) usage("--modules needs a directory");
    modulesDir = argv[++i];
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

const files = readdirSync(manifestDir)
  .filter((f) => /\.ya?ml$/.test(f) && statSync(join(manifestDir, f)).isFile())
  .sort();
if (files.length === 0) usage(`no YAML files in ${manifestDir}`);

function parseAll(text, version) {
  return YAML.parseAllDocuments(text, { version, prettyErrors: false });
}

const documents = []; // {file, doc}
for (const file of files) {
  const text = readFileSync(join(manifestDir, file), "utf8");
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

function unknownKeys(object, known) {
  return object && typeof object === "object"
    ? Object.keys(object).filter((k) => !known.has(k))
    : [];
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
  let lagTriggers = 0;
  let pendingTriggers = 0;
  (spec.triggers ?? []).forEach((trigger, i) => {
    const where = `spec.triggers[${i}]`;
    for (const k of unknownKeys(trigger, TRIGGER)) fail(file, doc, `${where}.${k} is not a trigger field`);
    if (trigger?.type !== "redis-streams") return;
    const meta = trigger.metadata ?? {};
    for (const k of unknownKeys(meta, REDIS_STREAMS_METADATA)) {
      fail(file, doc, `${where}.metadata.${k} is not read by the redis-streams scaler`);
    }
    for (const k of ["stream", "consumerGroup"]) {
      if (!meta[k]) fail(file, doc, `${where}.metadata.${k} is required here`);
    }
    if (!meta.address && !meta.addressFromEnv && !meta.host && !meta.hostFromEnv) {
      fail(file, doc, `${where}.metadata has no Redis address (address, addressFromEnv, host)`);
    }
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
if (!kustomization) {
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
  `k8s manifests in ${manifestDir}: ${documents.length} documents in ${files.length} files valid\n`);
