// Kiln's public catalogue: the public AMIs that documentation and infrastructure code look up
// (Terraform's `aws_ami`, Packer's `source_ami_filter`, the public SSM parameters), named as
// their publishers name them. The built-in images are data (catalogue/public-images.json);
// an operator adds or replaces entries with a JSON file (KILN_CATALOGUE_FILE), may pin their ids,
// and may give one a real root disk.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import AjvModule, { type ErrorObject } from "ajv";
import { REGIONS } from "./regions.js";

export type Architecture = "x86_64" | "arm64";
type BootMode = "legacy-bios" | "uefi" | "uefi-preferred";

export interface CatalogueEntry {
  name: string;
  ownerId: string;
  ownerAlias?: string;
  description: string;
  architecture: Architecture;
  platform?: "windows";
  /** What EC2 bills it as (DescribeImages' PlatformDetails and UsageOperation); Linux/UNIX or Windows when absent. */
  platformDetails?: string;
  usageOperation?: string;
  rootDeviceName: string;
  /** GiB; from the root disk's size when it has one and this is absent. */
  volumeSize?: number;
  bootMode?: BootMode;
  enaSupport?: boolean;
  creationDate: string;
  deprecationTime?: string;
  imdsSupport?: "v2.0";
  /** Pinned ids: one for every region, or one per region (the others derive theirs). */
  imageId?: string | Record<string, string>;
  /** A disk image file (raw, VMDK, QCOW2, VHD or VHDX) whose data the root snapshot holds. */
  rootDisk?: string;
  /** Public SSM parameters (paths) that name this image. */
  ssmParameters?: string[];
}

/** A public SSM parameter: a path that names the newest image of a series. */
export interface PublicParameter {
  name: string;
  entry: CatalogueEntry;
  /** How many images the path has named: its parameter version. */
  version: number;
}

export interface PublicCatalogue {
  entries: readonly CatalogueEntry[];
  parameters: ReadonlyMap<string, PublicParameter>;
}

/** The built-in file holds series: each expands to an image per architecture and serial. */
interface CatalogueFile {
  publishers: Record<string, { ownerId: string; ownerAlias?: string }>;
  serials: Record<string, Record<string, string>>;
  series: SeriesEntry[];
}

interface SeriesEntry {
  publisher: string;
  serials: string;
  /** The publisher's words for them: amd64 or x86_64, and arm64. */
  architectures: string[];
  name: string;
  description: string;
  platform?: "windows";
  platformDetails?: string;
  usageOperation?: string;
  rootDeviceName: string;
  volumeSize: number;
  bootMode?: BootMode;
  imdsSupport?: "v2.0";
  ssm?: (string | { path: string; architecture: Architecture })[];
}

const ARCHITECTURES: Record<string, Architecture> = { amd64: "x86_64", x86_64: "x86_64", arm64: "arm64" };

const Ajv = AjvModule.default;
const ajv = new Ajv({ allErrors: true });

const OWNER_ID = { type: "string", pattern: "^[0-9]{12}$" } as const;
const TIMESTAMP = { type: "string", pattern: "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?Z$" } as const;
const IMAGE_ID = { type: "string", pattern: "^ami-([0-9a-f]{8}|[0-9a-f]{17})$" } as const;
const PARAMETER_PATH = { type: "string", pattern: "^(/[A-Za-z0-9_.{}-]+)+$" } as const;
const BOOT_MODE = { type: "string", enum: ["legacy-bios", "uefi", "uefi-preferred"] } as const;
const DEVICE_NAME = { type: "string", pattern: "^/dev/[a-z0-9]+$" } as const;
const NAME = { type: "string", minLength: 3, maxLength: 128 } as const;
/** What EC2 reports of an image, the same in a series of the built-in file and in an operator's entry. */
const IMAGE_FIELDS = {
  platform: { type: "string", enum: ["windows"] },
  platformDetails: { type: "string" },
  usageOperation: { type: "string", pattern: "^RunInstances(:[0-9a-z]{4})?$" },
  rootDeviceName: DEVICE_NAME,
  volumeSize: { type: "integer", minimum: 1, maximum: 16384 },
  bootMode: BOOT_MODE,
  imdsSupport: { type: "string", enum: ["v2.0"] },
} as const;

const checkFile = ajv.compile<CatalogueFile>({
  type: "object",
  required: ["publishers", "serials", "series"],
  properties: {
    $comment: { type: "string" },
    publishers: {
      type: "object",
      additionalProperties: {
        type: "object",
        required: ["ownerId"],
        additionalProperties: false,
        properties: { ownerId: OWNER_ID, ownerAlias: { type: "string" } },
      },
    },
    serials: { type: "object", additionalProperties: { type: "object", minProperties: 1, additionalProperties: TIMESTAMP } },
    series: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["publisher", "serials", "architectures", "name", "description", "rootDeviceName", "volumeSize"],
        properties: {
          publisher: { type: "string" },
          serials: { type: "string" },
          architectures: { type: "array", minItems: 1, uniqueItems: true, items: { type: "string", enum: Object.keys(ARCHITECTURES) } },
          name: { type: "string", pattern: "\\{serial\\}" },
          description: { type: "string", minLength: 1 },
          ...IMAGE_FIELDS,
          ssm: {
            type: "array",
            items: {
              anyOf: [
                PARAMETER_PATH,
                {
                  type: "object",
                  required: ["path", "architecture"],
                  additionalProperties: false,
                  properties: { path: PARAMETER_PATH, architecture: { type: "string", enum: ["x86_64", "arm64"] } },
                },
              ],
            },
          },
        },
      },
    },
  },
});

const ENTRY_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["name", "ownerId", "architecture", "rootDeviceName", "creationDate"],
  properties: {
    name: NAME,
    ownerId: OWNER_ID,
    ownerAlias: { type: "string" },
    description: { type: "string", maxLength: 255 },
    architecture: { type: "string", enum: ["x86_64", "arm64"] },
    ...IMAGE_FIELDS,
    enaSupport: { type: "boolean" },
    creationDate: TIMESTAMP,
    deprecationTime: TIMESTAMP,
    imageId: { anyOf: [IMAGE_ID, { type: "object", minProperties: 1, additionalProperties: IMAGE_ID }] },
    rootDisk: { type: "string", minLength: 1 },
    ssmParameters: { type: "array", items: PARAMETER_PATH },
  },
};
const checkEntries = ajv.compile<CatalogueEntry[]>({ type: "array", items: ENTRY_SCHEMA });

function schemaErrors(where: string, errors: ErrorObject[] | null | undefined): Error {
  const detail = (e: ErrorObject) =>
    "allowedValues" in e.params
      ? `: ${(e.params.allowedValues as string[]).join(", ")}`
      : "additionalProperty" in e.params
        ? `: ${e.params.additionalProperty as string}`
        : "";
  const lines = (errors ?? []).slice(0, 10).map((e) => `  ${e.instancePath || "(the file)"} ${e.message}${detail(e)}`);
  return new Error(`${where} is not a valid catalogue:\n${lines.join("\n")}`);
}

/** The built-in file, next to the package: dist/src/domain → the repository's catalogue/. */
export const BUILT_IN_CATALOGUE_FILE = fileURLToPath(new URL("../../../catalogue/public-images.json", import.meta.url));

const fill = (template: string, values: Record<string, string>) => template.replace(/\{(\w+)\}/g, (whole, key: string) => values[key] ?? whole);

/** The built-in catalogue's images and public parameters, checked against the file's schema and its own references. */
export function readBuiltInCatalogue(path = BUILT_IN_CATALOGUE_FILE): PublicCatalogue {
  const file: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!checkFile(file)) throw schemaErrors(path, checkFile.errors);
  const entries: CatalogueEntry[] = [];
  const parameters = new Map<string, PublicParameter>();
  for (const [i, series] of file.series.entries()) {
    const where = `${path}: series ${i} (${series.name})`;
    const publisher = file.publishers[series.publisher];
    const serials = file.serials[series.serials];
    if (!publisher) throw new Error(`${where} names publisher ${series.publisher}, which the file does not list`);
    if (!serials) throw new Error(`${where} names serials ${series.serials}, which the file does not list`);
    // Oldest first, so the last image of an architecture is the one a "latest" parameter names.
    const dated = Object.entries(serials).sort(([, a], [, b]) => a.localeCompare(b));
    for (const word of series.architectures) {
      const architecture = ARCHITECTURES[word]!;
      const made: CatalogueEntry[] = [];
      for (const [serial, created] of dated) {
        const values = { arch: word, serial, date: created.slice(0, 10) };
        made.push({
          name: fill(series.name, values),
          ownerId: publisher.ownerId,
          ownerAlias: publisher.ownerAlias,
          description: fill(series.description, values),
          architecture,
          platform: series.platform,
          platformDetails: series.platformDetails,
          usageOperation: series.usageOperation,
          rootDeviceName: series.rootDeviceName,
          volumeSize: series.volumeSize,
          // Graviton instances boot UEFI only; EC2 registers every arm64 image so.
          bootMode: architecture === "arm64" ? "uefi" : series.bootMode,
          enaSupport: true,
          creationDate: created,
          imdsSupport: series.imdsSupport,
        });
      }
      entries.push(...made);
      for (const ssm of series.ssm ?? []) {
        const path = typeof ssm === "string" ? ssm : ssm.path;
        if (typeof ssm !== "string" && ssm.architecture !== architecture) continue;
        if (path.includes("{serial}")) {
          for (const [k, entry] of made.entries()) addParameter(parameters, fill(path, { arch: word, serial: dated[k]![0] }), entry, 1, where);
        } else {
          addParameter(parameters, fill(path, { arch: word }), made.at(-1)!, made.length, where);
        }
      }
    }
  }
  return { entries, parameters };
}

function addParameter(parameters: Map<string, PublicParameter>, name: string, entry: CatalogueEntry, version: number, where: string) {
  if (/[{}]/.test(name)) throw new Error(`${where}: the parameter ${name} has a placeholder other than {arch} and {serial}`);
  if (!name.startsWith("/aws/service/")) throw new Error(`${where}: the public parameter ${name} is not under /aws/service/`);
  if (parameters.has(name)) throw new Error(`${where}: the parameter ${name} names two images`);
  parameters.set(name, { name, entry, version });
}

/** Entries from an operator's JSON file (an array of entries), checked before Kiln starts; a root disk's path is relative to the file. */
export function readCatalogueFile(path: string): CatalogueEntry[] {
  let entries: unknown;
  try {
    entries = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`${path} is not a JSON file Kiln can read: ${(error as Error).message}`);
  }
  if (!checkEntries(entries)) throw schemaErrors(path, checkEntries.errors);
  for (const entry of entries) {
    entry.description ??= entry.name;
    entry.enaSupport ??= true;
    if (entry.rootDisk) entry.rootDisk = resolve(dirname(path), entry.rootDisk);
    if (entry.rootDisk === undefined && entry.volumeSize === undefined) throw new Error(`${path}: the entry ${entry.name} needs a volumeSize or a rootDisk`);
  }
  return entries;
}

/**
 * The operator's entries over the built-in ones: an entry with a built-in image's name replaces
 * it (an operator's own Debian 12 in place of the stand-in), the others are added. Public
 * parameters that named a replaced image name its replacement; an entry's ssmParameters add
 * paths or take them over.
 */
export function withOperatorEntries(builtIn: PublicCatalogue, added: readonly CatalogueEntry[], where = "KILN_CATALOGUE_FILE"): PublicCatalogue {
  const byName = new Map(builtIn.entries.map((entry) => [entry.name, entry]));
  const seen = new Set<string>();
  for (const entry of added) {
    if (seen.has(entry.name)) throw new Error(`${where} gives the image ${entry.name} twice`);
    seen.add(entry.name);
    byName.set(entry.name, entry);
  }
  const parameters = new Map<string, PublicParameter>();
  for (const [name, parameter] of builtIn.parameters) parameters.set(name, { ...parameter, entry: byName.get(parameter.entry.name)! });
  for (const entry of added) {
    for (const name of entry.ssmParameters ?? []) {
      const before = parameters.get(name);
      parameters.set(name, { name, entry, version: (before?.version ?? 0) + 1 });
    }
  }
  const catalogue = { entries: [...byName.values()], parameters };
  checkIds(catalogue, where);
  return catalogue;
}

/** An id from a region and a key (an image name), the same on every Kiln. */
export const derivedId = (prefix: string, region: string, key: string) =>
  `${prefix}-${createHash("sha256").update(`${region}\0${key}`).digest("hex").slice(0, 17)}`;

/**
 * The region an image pinned to one id everywhere is kept in: ids are unique across regions in
 * the metadata store, so such an image is one row that every region sees.
 */
export const EVERY_REGION = "*";

/** An entry's image id in a region: pinned, or derived from the region and name (the same on every Kiln). */
export function imageIdIn(entry: CatalogueEntry, region: string): string {
  const pinned = typeof entry.imageId === "string" ? entry.imageId : entry.imageId?.[region];
  return pinned ?? derivedId("ami", region, entry.name);
}

/** Two images with one id in a region would make lookups by id lie: refuse them at start-up, naming both. */
function checkIds(catalogue: PublicCatalogue, where: string) {
  const regions = new Set(REGIONS.map((r) => r.name));
  for (const entry of catalogue.entries) {
    if (entry.imageId && typeof entry.imageId === "object") {
      for (const region of Object.keys(entry.imageId))
        if (!regions.has(region)) throw new Error(`${where}: the image ${entry.name} pins an id in ${region}, which is not a region Kiln serves`);
    }
  }
  for (const region of regions) {
    const holder = new Map<string, string>();
    for (const entry of catalogue.entries) {
      const id = imageIdIn(entry, region);
      const other = holder.get(id);
      if (other !== undefined) throw new Error(`${where}: the images ${other} and ${entry.name} both have the id ${id} in ${region}; give each its own`);
      holder.set(id, entry.name);
    }
  }
}

/** The catalogue Kiln serves: the built-in file, with the operator's file (if any) over it. */
export function loadCatalogue(operatorFile?: string): PublicCatalogue {
  const builtIn = readBuiltInCatalogue();
  return withOperatorEntries(builtIn, operatorFile ? readCatalogueFile(operatorFile) : [], operatorFile);
}
