// The names in a folder, none when it does not exist (yet, or any more) or is a stray file: what
// the stores' sweeps and start-up passes walk.
import { opendir } from "node:fs/promises";

export async function listDir(path: string): Promise<string[]> {
  try {
    const names: string[] = [];
    for await (const entry of await opendir(path)) names.push(entry.name);
    return names;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
}
