// Type-checks every dashboard in dashboards/ against Grafana's own schema, @grafana/schema.
// Run: npm ci && npm run check   (node generate.mjs && tsc --noEmit)
//
// A dashboard file is the JSON form of `Dashboard`: where the schema declares a TypeScript
// enum (ThresholdsMode, FieldColorModeId, ...) the file holds the enum's value ("absolute"),
// which TypeScript does not accept for the enum itself. `JsonOf` swaps each string enum for
// the union of its values and keeps everything else, so "satisfies DashboardJson" means
// "is a Dashboard as Grafana stores it". Panels of the types we use are also checked against
// their plugin's options and custom field config.
import type { Dashboard, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

import { dashboards } from './dashboards.gen';

export type JsonOf<T> = T extends string
  ? `${T}`
  : T extends Array<infer Item>
    ? Array<JsonOf<Item>>
    : T extends object
      ? { [Key in keyof T]: JsonOf<T[Key]> }
      : T;

type PluginPanel<Type extends string, Options, Custom> = Omit<
  JsonOf<Panel>,
  'type' | 'options' | 'fieldConfig'
> & {
  type: Type;
  options: JsonOf<Options>;
  fieldConfig: JsonOf<FieldConfigSource<Custom>>;
};

type PanelJson =
  | PluginPanel<'stat', Stat.Options, Record<string, unknown>>
  | PluginPanel<'table', Table.Options, Table.FieldConfig>
  | PluginPanel<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | JsonOf<RowPanel>;

export type DashboardJson = Omit<JsonOf<Dashboard>, 'panels'> & { panels: PanelJson[] };

// The stricter per-plugin form above must still be a plain Dashboard.
dashboards satisfies Record<string, JsonOf<Dashboard>>;
