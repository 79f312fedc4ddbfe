// What helm renders, as objects, for the chart's tests (test/helm.test.ts, test/manifests-validation.test.ts).
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { K8sObject } from './k8s-validation.js';

/** A CA certificate's shape, base64 as the chart takes it (the chart never parses it). */
export const CA = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64');

export function parseObjects(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    expect(doc.errors).toEqual([]);
    const value = doc.toJS() as K8sObject | null;
    if (value) objects.push(value);
  }
  return objects;
}
