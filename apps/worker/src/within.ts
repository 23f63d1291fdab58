/**
 * Whether `work` finishes within `ms` (it rejects if the work fails in time); if not, it goes on
 * unwatched, and a later failure of it is dropped: the caller (shutdown, mostly) has moved on.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  return Promise.race([work.then(() => true), late]).finally(() => clearTimeout(timer));
}
