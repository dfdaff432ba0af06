// The shape of the source tree, read from the sources themselves: no module imports itself back
// through others (type-only imports count: a circle of types is a circle a reader must walk), and
// an EC2 action file imports no other action file, only the action contract and shared modules.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : [],
  );
}

/** Each source file's relative imports and re-exports, as source paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, "utf8");
    const targets = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.{1,2}\/[^"]+)\.js"/g)].map((m) =>
      normalize(join(dirname(file), `${m[1]}.ts`)),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** Every circle in the graph, each as the files around it. */
function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(file, "done");
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

/** Imports that break docs/architecture.md's layer rules, each with the rule it breaks. */
function layerCrossings(graph: Map<string, string[]>): string[] {
  // What each layer never imports, by path under src/.
  const rules: { from: RegExp; to: RegExp; why: string }[] = [
    { from: /^(?!http\/|app\.ts$|cli\/)/, to: /^(http|cli)\/|^app\.ts$/, why: "only the entry points import the front doors" },
    { from: /^(tasks|vm|store|formats|inspect|workers|protocol|domain|auth)\//, to: /^api\//, why: "nothing below the actions imports them" },
    { from: /^(vm|store|formats|inspect|workers|protocol|domain|auth)\//, to: /^tasks\//, why: "nothing below the tasks imports them" },
    { from: /^(store|formats|inspect|workers|protocol|domain|auth)\//, to: /^vm\//, why: "nothing below the running instances imports them" },
    { from: /^(formats|inspect|protocol|domain|auth)\//, to: /^store\//, why: "bytes, wire and rules do not reach the store" },
  ];
  const serviceOf = (path: string) => /^api\/([^/]+)\//.exec(path)?.[1];
  const crossings: string[] = [];
  for (const [file, targets] of graph) {
    const from = relative(SRC, file);
    for (const to of targets.map((target) => relative(SRC, target))) {
      for (const rule of rules) if (rule.from.test(from) && rule.to.test(to)) crossings.push(`${from} → ${to}: ${rule.why}`);
      // EC2 may use S3's buckets and SSM's parameters; the other services use no other's actions.
      const [mine, theirs] = [serviceOf(from), serviceOf(to)];
      if (mine && theirs && mine !== theirs && mine !== "ec2") crossings.push(`${from} → ${to}: a service other than EC2 uses no other service's actions`);
    }
  }
  return crossings;
}

const shown = (files: string[]) => files.map((f) => relative(SRC, f)).join(" → ");

describe("the source tree's imports", () => {
  const graph = importGraph();

  it("reads the whole tree, and every relative import names a file that exists", () => {
    assert.ok(graph.size > 100, `only ${graph.size} source files found under ${SRC}`);
    for (const [file, targets] of graph)
      for (const target of targets) assert.ok(graph.has(target), `${relative(SRC, file)} imports ${relative(SRC, target)}, which is not a source file`);
  });

  it("has no circle", () => {
    assert.deepEqual(circles(graph).map(shown), []);
  });

  it("keeps each EC2 action family to itself: an action file imports no other action file", () => {
    const actionFiles = [...graph.keys()].filter(
      (file) => file.startsWith(join(SRC, "api", "ec2")) && /export const \w+: ActionTable\b/.test(readFileSync(file, "utf8")),
    );
    assert.ok(actionFiles.length >= 15, `only ${actionFiles.length} action files found`);
    const crossings = actionFiles.flatMap((file) =>
      (graph.get(file) ?? []).filter((target) => actionFiles.includes(target)).map((target) => shown([file, target])),
    );
    assert.deepEqual(crossings, []);
  });

  it("keeps each layer from importing the layers above it (docs/architecture.md, Layers)", () => {
    assert.deepEqual(layerCrossings(graph), []);
  });

  it("finds a layer crossing when there is one (the check itself)", () => {
    const fake = new Map([
      [join(SRC, "store/meta/a.ts"), [join(SRC, "api/ec2/b.ts")]],
      [join(SRC, "api/ssm/c.ts"), [join(SRC, "api/s3/d.ts")]],
      [join(SRC, "api/ec2/e.ts"), [join(SRC, "api/s3/d.ts")]],
      [join(SRC, "vm/f.ts"), [join(SRC, "tasks/g.ts"), join(SRC, "store/h.ts")]],
      [join(SRC, "store/blocks/i.ts"), [join(SRC, "vm/f.ts")]],
    ]);
    assert.deepEqual(layerCrossings(fake), [
      "store/meta/a.ts → api/ec2/b.ts: nothing below the actions imports them",
      "api/ssm/c.ts → api/s3/d.ts: a service other than EC2 uses no other service's actions",
      "vm/f.ts → tasks/g.ts: nothing below the tasks imports them",
      "store/blocks/i.ts → vm/f.ts: nothing below the running instances imports them",
    ]);
  });

  it("finds a circle when there is one (the check itself)", () => {
    const a = join(SRC, "a.ts");
    const b = join(SRC, "b.ts");
    assert.deepEqual(
      circles(
        new Map([
          [a, [b]],
          [b, [a]],
        ]),
      ).map(shown),
      ["a.ts → b.ts → a.ts"],
    );
  });
});
