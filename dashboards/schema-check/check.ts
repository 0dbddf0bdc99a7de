import type { Dashboard } from '@grafana/schema';
import dashboard from '../flexcloud-exporter.json' with { type: 'json' };

dashboard satisfies Dashboard;
