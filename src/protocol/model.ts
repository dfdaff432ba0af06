// The official EC2 service model (botocore's service-2.json, pinned in model/) compiled into
// shapes the codec walks. Loaded once at start-up: a missing or malformed model stops Kiln there.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

export type ScalarType = "string" | "boolean" | "integer" | "long" | "float" | "double" | "timestamp" | "blob";

export interface Member {
  readonly name: string;
  /** Query-string name: queryName, else capitalised locationName, else the member name. */
  readonly wireName: string;
  /** Element name in XML responses: locationName, else the member name. */
  readonly xmlName: string;
  readonly shape: Shape;
}

export interface StructureShape {
  readonly type: "structure";
  readonly name: string;
  readonly members: readonly Member[];
  readonly required: ReadonlySet<string>;
  /** Input names a request may use for a member: its wire name and its member name. */
  readonly byInputName: ReadonlyMap<string, Member>;
}

export interface ListShape {
  readonly type: "list";
  readonly name: string;
  readonly member: Member;
  readonly min?: number;
  readonly max?: number;
}

export interface MapShape {
  readonly type: "map";
  readonly name: string;
  readonly key: Member;
  readonly value: Member;
}

export interface ScalarShape {
  readonly type: ScalarType;
  readonly name: string;
  readonly enum?: ReadonlySet<string>;
  readonly min?: number;
  readonly max?: number;
}

export type Shape = StructureShape | ListShape | MapShape | ScalarShape;

export interface Operation {
  readonly name: string;
  readonly input?: StructureShape;
  readonly output?: StructureShape;
}

interface RawMemberRef {
  shape: string;
  locationName?: string;
  queryName?: string;
}

interface RawShape {
  type: string;
  members?: Record<string, RawMemberRef>;
  member?: RawMemberRef;
  key?: RawMemberRef;
  value?: RawMemberRef;
  required?: string[];
  enum?: string[];
  min?: number;
  max?: number;
}

interface RawModel {
  metadata: { apiVersion: string; protocol: string; xmlNamespace: string };
  operations: Record<string, { name: string; input?: { shape: string }; output?: { shape: string } }>;
  shapes: Record<string, RawShape>;
}

const SCALARS = new Set<string>(["string", "boolean", "integer", "long", "float", "double", "timestamp", "blob"]);

export class ServiceModel {
  readonly apiVersion: string;
  /** EC2 answers with the namespace's trailing slash. */
  readonly xmlNamespace: string;
  readonly operations: ReadonlyMap<string, Operation>;
  private readonly compiled = new Map<string, Shape>();

  constructor(private readonly raw: RawModel) {
    if (raw?.metadata?.protocol !== "ec2" || typeof raw.operations !== "object" || typeof raw.shapes !== "object") {
      throw new Error("the EC2 model is malformed: expected an ec2-protocol service with operations and shapes");
    }
    this.apiVersion = raw.metadata.apiVersion;
    this.xmlNamespace = raw.metadata.xmlNamespace.replace(/\/?$/, "/");
    const operations = new Map<string, Operation>();
    for (const [name, op] of Object.entries(raw.operations)) {
      operations.set(name, {
        name,
        input: op.input ? this.structure(op.input.shape) : undefined,
        output: op.output ? this.structure(op.output.shape) : undefined,
      });
    }
    this.operations = operations;
  }

  structure(name: string): StructureShape {
    const shape = this.shape(name);
    if (shape.type !== "structure") throw new Error(`shape ${name} is a ${shape.type}, not a structure`);
    return shape;
  }

  shape(name: string): Shape {
    const done = this.compiled.get(name);
    if (done) return done;
    const raw = this.raw.shapes[name];
    if (!raw) throw new Error(`the EC2 model has no shape ${name}`);
    if (raw.type === "structure") {
      // Registered before its members are compiled, so recursive shapes resolve to this object.
      const members: Member[] = [];
      const byInputName = new Map<string, Member>();
      const shape: StructureShape = { type: "structure", name, members, required: new Set(raw.required ?? []), byInputName };
      this.compiled.set(name, shape);
      for (const [memberName, ref] of Object.entries(raw.members ?? {})) {
        const member = this.member(memberName, ref);
        members.push(member);
        byInputName.set(member.wireName, member);
        byInputName.set(memberName, member);
      }
      return shape;
    }
    if (raw.type === "list") {
      const placeholder = { type: "list", name, min: raw.min, max: raw.max } as { -readonly [K in keyof ListShape]: ListShape[K] };
      this.compiled.set(name, placeholder);
      placeholder.member = this.member("member", raw.member ?? missing(name, "member"));
      return placeholder;
    }
    if (raw.type === "map") {
      const placeholder = { type: "map", name } as { -readonly [K in keyof MapShape]: MapShape[K] };
      this.compiled.set(name, placeholder);
      placeholder.key = this.member("key", raw.key ?? missing(name, "key"));
      placeholder.value = this.member("value", raw.value ?? missing(name, "value"));
      return placeholder;
    }
    if (!SCALARS.has(raw.type)) throw new Error(`shape ${name} has unknown type ${raw.type}`);
    const scalar: ScalarShape = {
      type: raw.type as ScalarType,
      name,
      enum: raw.enum ? new Set(raw.enum) : undefined,
      min: raw.min,
      max: raw.max,
    };
    this.compiled.set(name, scalar);
    return scalar;
  }

  private member(name: string, ref: RawMemberRef): Member {
    const capitalised = ref.locationName ? ref.locationName[0]!.toUpperCase() + ref.locationName.slice(1) : undefined;
    return {
      name,
      wireName: ref.queryName ?? capitalised ?? name,
      xmlName: ref.locationName ?? name,
      shape: this.shape(ref.shape),
    };
  }
}

function missing(shape: string, part: string): never {
  throw new Error(`the EC2 model's list or map ${shape} has no ${part}`);
}

const MODEL_FILE = new URL("../../../model/ec2-2016-11-15.json.gz", import.meta.url);

let loaded: ServiceModel | undefined;

/** The pinned EC2 model, parsed and compiled once per process. */
export function ec2Model(): ServiceModel {
  loaded ??= new ServiceModel(JSON.parse(gunzipSync(readFileSync(MODEL_FILE)).toString("utf8")) as RawModel);
  return loaded;
}
