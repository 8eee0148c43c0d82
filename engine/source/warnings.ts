/**
 * Non-fatal problems met while backing up (a file that vanished, a special
 * file skipped, a symlink loop…). Counted per kind, with a bounded list of
 * samples for the run summary, so a tree with a million fifos cannot grow the
 * summary without bound.
 */

/** Kinds of warning; stable strings shown in run summaries. */
export type WarningKind =
  | 'special_file_skipped'
  | 'symlink_skipped'
  | 'symlink_loop'
  | 'dangling_symlink'
  | 'vanished'
  | 'changed_during_read'
  | 'non_utf8_name'
  | 'overlapping_source_path'
  | 'xattrs_unavailable'
  | 'xattrs_unreadable';

/** Most samples kept (the reference keeps 50). */
export const MAX_WARNING_SAMPLES = 50;

/** The summary form of the warnings. */
export interface WarningsSummary {
  total: number;
  by_kind: Partial<Record<WarningKind, number>>;
  samples: Array<{ kind: WarningKind; message: string }>;
}

/** Collects warnings of one run. */
export class Warnings {
  private total = 0;
  private readonly byKind: Partial<Record<WarningKind, number>> = {};
  private readonly samples: Array<{ kind: WarningKind; message: string }> = [];

  add(kind: WarningKind, message: string): void {
    this.total++;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (this.samples.length < MAX_WARNING_SAMPLES) this.samples.push({ kind, message: message.slice(0, 1000) });
  }

  count(kind?: WarningKind): number {
    return kind === undefined ? this.total : (this.byKind[kind] ?? 0);
  }

  summary(): WarningsSummary {
    return { total: this.total, by_kind: { ...this.byKind }, samples: this.samples.map((s) => ({ ...s })) };
  }
}
