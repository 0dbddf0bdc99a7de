// Validates Prometheus Operator objects against the operator's own schemas, as
// packaged by @kubernetes-models (the core kinds are checked by
// kubernetes-validate, which has no schemas for custom resources).
//
//   node validate.mjs FILE...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = {
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

let failures = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
      failures += 1;
      continue;
    }
    const object = doc.toJS();
    const key = `${object.apiVersion}/${object.kind}`;
    const Model = models[key];
    if (Model === undefined) {
      console.error(`${file}: no schema here for ${key}`);
      failures += 1;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`${file}: ${key} ${object.metadata.name} is valid`);
    } catch (error) {
      console.error(`${file}: ${key} ${object.metadata?.name}: ${error.message}`);
      failures += 1;
    }
  }
}
process.exit(failures === 0 ? 0 : 1);
