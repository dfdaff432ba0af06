// SSM Parameter Store as infrastructure code uses it: the public AMI parameters under
// /aws/service/ (from the catalogue, per region), and an account's own String, StringList and
// SecureString parameters (Terraform's aws_ssm_parameter, `resolve:ssm:` in RunInstances).
// Parameter Store keeps no KMS: a SecureString is kept as given, and answered in place of its
// value with an opaque token unless WithDecryption is set.
import { createHash } from "node:crypto";
import { createContext, Script } from "node:vm";
import { imageIdIn, type PublicCatalogue, type PublicParameter } from "../../domain/catalogue.js";
import { decodeNextToken, encodeNextToken } from "../../domain/pagination.js";
import { ApiError } from "../../protocol/errors.js";
import type { MetaStore } from "../../store/meta/database.js";
import {
  changeSsmParameterTags,
  countSsmParameters,
  deleteSsmParameters,
  insertSsmParameter,
  overwriteSsmParameter,
  ssmParameter,
  ssmParametersAfter,
  ssmParametersNamed,
  type SsmParameterRow,
} from "../../store/meta/ssm-parameters.js";

export interface SsmContext {
  accountId: string;
  region: string;
  meta: MetaStore;
  catalogue: PublicCatalogue;
}

/** A parameter as GetParameter answers it. */
export interface Parameter {
  Name: string;
  Type: string;
  Value: string;
  Version: number;
  Selector?: string;
  LastModifiedDate: Date;
  ARN: string;
  DataType: string;
}

const PUBLIC_PREFIX = "/aws/service/";
/** Parameters an account may hold in a region (Parameter Store's standard-tier quota). */
export const MAX_PARAMETERS = 10_000;
const MAX_TAGS = 50;
const MAX_DEPTH = 15;
const VALUE_LIMIT: Record<string, number> = { Standard: 4096, Advanced: 8192 };
const TYPES = ["String", "StringList", "SecureString"];
const DATA_TYPES = ["text", "aws:ec2:image", "aws:ssm:integration"];
const AMI_ID = /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/;

// ---- reading the JSON input ----

type Json = Record<string, unknown>;
type Kind = "string" | "boolean" | "number" | "array" | "object";

/** One member of the input, of the JSON type the SSM model gives it; a wrong type is a SerializationException, as SSM answers. */
function member<T>(input: Json, name: string, kind: Kind, required = false): T | undefined {
  const value = input[name];
  if (value === undefined || value === null) {
    if (required) throw validation(`Value null at '${name[0]!.toLowerCase()}${name.slice(1)}' failed to satisfy constraint: Member must not be null`);
    return undefined;
  }
  const ok = kind === "array" ? Array.isArray(value) : kind === "object" ? typeof value === "object" && !Array.isArray(value) : typeof value === kind;
  if (!ok) throw new ApiError("SerializationException", `${name} must be a JSON ${kind}.`);
  return value as T;
}

const strings = (input: Json, name: string, required = false): string[] | undefined => {
  const list = member<unknown[]>(input, name, "array", required);
  if (list && !list.every((v) => typeof v === "string")) throw new ApiError("SerializationException", `${name} must be a list of strings.`);
  return list as string[] | undefined;
};

const validation = (message: string) => new ApiError("ValidationException", `1 validation error detected: ${message}`);

function maxResults(input: Json, max: number): number {
  const n = member<number>(input, "MaxResults", "number");
  if (n === undefined) return max;
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw validation(`Value '${n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and ${max}`);
  return n;
}

// ---- names ----

/** The name an input gives, whether as a name or as the parameter's ARN. */
function nameFrom(given: string): string {
  const arn = /^arn:aws[a-z-]*:ssm:[a-z0-9-]*:[0-9]*:parameter\/(.+)$/.exec(given);
  if (!arn) return given;
  return arn[1]!.includes("/") ? `/${arn[1]}` : arn[1]!;
}

/** A name and the version or label it selects (`name:3`, `name:label`). */
function selectorOf(given: string): { name: string; selector?: string } {
  const name = nameFrom(given);
  const colon = name.lastIndexOf(":");
  return colon > 0 ? { name: name.slice(0, colon), selector: name.slice(colon + 1) } : { name };
}

function checkNewName(name: string) {
  if (name.length < 1 || name.length > 1011) throw validation(`Value at 'name' failed to satisfy constraint: Member must have length between 1 and 1011`);
  if (/^\/?(aws|ssm)/i.test(name)) {
    throw validation(
      `Parameter name: can't be prefixed with "aws" or "ssm" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_`,
    );
  }
  if (!/^[A-Za-z0-9_.\-/]+$/.test(name)) throw validation("Parameter name must only contain letters, numbers, and the following 3 symbols .-_ and /");
  if (name.includes("/") && !name.startsWith("/")) throw validation("Parameter name must be a fully qualified name.");
  if (name.includes("//") || (name.length > 1 && name.endsWith("/"))) throw validation("Parameter name must not contain an empty path segment.");
  if (name.split("/").length - 1 > MAX_DEPTH)
    throw new ApiError("HierarchyLevelLimitExceededException", `A hierarchy can have a maximum of ${MAX_DEPTH} levels.`);
}

const arnOf = (region: string, accountId: string, name: string) => `arn:aws:ssm:${region}:${accountId}:parameter${name.startsWith("/") ? "" : "/"}${name}`;

// ---- AllowedPattern ----

/** SSM's longest AllowedPattern. */
const MAX_PATTERN = 1024;
/** How long one match may take: a pattern that backtracks without end must not hold the server. */
const PATTERN_MS = 50;
const patternTest = new Script('new RegExp(pattern, "u").test(value)');
const patternContext = createContext({ pattern: "", value: "" });

/**
 * Whether `value` matches the caller's pattern. The match runs in a vm context with a time limit,
 * which interrupts a catastrophically backtracking pattern (`(a+)+$`) where a plain RegExp would
 * block every request.
 */
function matchesPattern(pattern: string, value: string): boolean {
  if (pattern.length > MAX_PATTERN)
    throw validation(`Value at 'allowedPattern' failed to satisfy constraint: Member must have length less than or equal to ${MAX_PATTERN}`);
  patternContext.pattern = pattern;
  patternContext.value = value;
  try {
    return patternTest.runInContext(patternContext, { timeout: PATTERN_MS }) === true;
  } catch (error) {
    const { code, name } = error as { code?: string; name?: string };
    if (code === "ERR_SCRIPT_EXECUTION_TIMEOUT")
      throw new ApiError("InvalidAllowedPatternException", `The AllowedPattern ${pattern} took more than ${PATTERN_MS} ms to match the value.`);
    if (name === "SyntaxError") throw new ApiError("InvalidAllowedPatternException", `The AllowedPattern ${pattern} is not a valid regular expression.`);
    throw error;
  }
}

// ---- answers ----

function publicAnswer(ctx: SsmContext, parameter: PublicParameter): Parameter {
  return {
    Name: parameter.name,
    Type: "String",
    Value: imageIdIn(parameter.entry, ctx.region),
    Version: parameter.version,
    LastModifiedDate: new Date(parameter.entry.creationDate),
    ARN: arnOf(ctx.region, "", parameter.name),
    DataType: "text",
  };
}

/** What SSM shows of a SecureString without WithDecryption: an opaque token, never the value. */
const sealed = (row: SsmParameterRow) =>
  createHash("sha256")
    .update(`${row.key_id ?? "alias/aws/ssm"}\0${row.name}\0${row.version}\0${row.value}`)
    .digest("base64");

function ownAnswer(ctx: SsmContext, row: SsmParameterRow, withDecryption: boolean): Parameter {
  return {
    Name: row.name,
    Type: row.type,
    Value: row.type === "SecureString" && !withDecryption ? sealed(row) : row.value,
    Version: row.version,
    LastModifiedDate: new Date(row.last_modified),
    ARN: arnOf(ctx.region, ctx.accountId, row.name),
    DataType: row.data_type,
  };
}

const isPublic = (name: string) => name.startsWith(PUBLIC_PREFIX);

/** The parameter a name (with its selector) names, or undefined. */
async function lookUp(ctx: SsmContext, given: string, withDecryption: boolean): Promise<Parameter | undefined> {
  const { name, selector } = selectorOf(given);
  let found: Parameter | undefined;
  if (isPublic(name)) {
    const parameter = ctx.catalogue.parameters.get(name);
    found = parameter && publicAnswer(ctx, parameter);
  } else {
    const row = await ssmParameter(ctx.meta.db, ctx, name);
    found = row && ownAnswer(ctx, row, withDecryption);
  }
  if (!found || selector === undefined) return found;
  // Only the current version is kept: a selector that names another one finds nothing.
  if (!/^[0-9]+$/.test(selector)) throw validation(`Kiln keeps no parameter labels: the selector ${selector} of ${name} cannot be resolved.`);
  if (Number(selector) !== found.Version)
    throw new ApiError("ParameterVersionNotFound", `Systems Manager could not find version ${selector} of ${name}. Verify the version and try again.`);
  return { ...found, Selector: `:${selector}` };
}

const notFound = (name: string) => new ApiError("ParameterNotFound", `Parameter ${name} not found.`);

// ---- the actions ----

async function getParameter(ctx: SsmContext, input: Json) {
  const name = member<string>(input, "Name", "string", true)!;
  const found = await lookUp(ctx, name, member<boolean>(input, "WithDecryption", "boolean") ?? false);
  if (!found) throw notFound(selectorOf(name).name);
  return { Parameter: found };
}

async function getParameters(ctx: SsmContext, input: Json) {
  const names = strings(input, "Names", true)!;
  if (names.length < 1 || names.length > 10)
    throw validation(`Value '[${names.join(", ")}]' at 'names' failed to satisfy constraint: Member must have length between 1 and 10`);
  const withDecryption = member<boolean>(input, "WithDecryption", "boolean") ?? false;
  const Parameters: Parameter[] = [];
  const InvalidParameters: string[] = [];
  for (const name of new Set(names)) {
    const found = await lookUp(ctx, name, withDecryption).catch((error: unknown) => {
      if (error instanceof ApiError && error.code === "ParameterVersionNotFound") return undefined;
      throw error;
    });
    if (found) Parameters.push(found);
    else InvalidParameters.push(name);
  }
  return { Parameters, InvalidParameters };
}

interface Filter {
  Key: string;
  Option?: string;
  Values?: string[];
}

function filtersOf(input: Json, name: string): Filter[] {
  const list = member<unknown[]>(input, name, "array") ?? [];
  return list.map((item) => {
    if (typeof item !== "object" || item === null) throw new ApiError("SerializationException", `${name} must be a list of filters.`);
    const filter = item as Json;
    return { Key: member<string>(filter, "Key", "string", true)!, Option: member<string>(filter, "Option", "string"), Values: strings(filter, "Values") };
  });
}

/** Whether a name lies under a path: a direct child, or (recursive) anywhere below. */
function under(path: string, name: string, recursive: boolean): boolean {
  const prefix = path === "/" ? "/" : `${path}/`;
  if (!name.startsWith(prefix) || name.length === prefix.length) return false;
  return recursive || !name.slice(prefix.length).includes("/");
}

/** A page of matching items from candidates in name order, and the token that resumes after it. */
async function pageOf<T>(
  candidates: (after: string | undefined, limit: number) => Promise<T[]>,
  nameOf: (item: T) => string,
  keep: (item: T) => boolean,
  size: number,
  token: string | undefined,
): Promise<{ items: T[]; next?: string }> {
  let after = decodeNextToken(token, 1)?.[0];
  const items: T[] = [];
  const batch = 256;
  for (;;) {
    const page = await candidates(after, batch);
    for (const item of page) {
      after = nameOf(item);
      if (!keep(item)) continue;
      items.push(item);
      if (items.length === size) return { items, next: encodeNextToken([after]) };
    }
    if (page.length < batch) return { items };
  }
}

let sortedPublic: { catalogue: PublicCatalogue; names: string[] } | undefined;
function publicNames(catalogue: PublicCatalogue): string[] {
  if (sortedPublic?.catalogue !== catalogue) sortedPublic = { catalogue, names: [...catalogue.parameters.keys()].sort() };
  return sortedPublic.names;
}

async function getParametersByPath(ctx: SsmContext, input: Json) {
  let path = member<string>(input, "Path", "string", true)!;
  if (!path.startsWith("/"))
    throw validation('The parameter doesn\'t meet the parameter name requirements. The parameter name must begin with a forward slash "/".');
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  const recursive = member<boolean>(input, "Recursive", "boolean") ?? false;
  const withDecryption = member<boolean>(input, "WithDecryption", "boolean") ?? false;
  const filters = filtersOf(input, "ParameterFilters");
  for (const f of filters) {
    if (!["Type", "KeyId", "Label"].includes(f.Key))
      throw new ApiError("InvalidFilterKey", `The following filter key is not valid: ${f.Key}. Valid filter keys include: [Type, KeyId, Label].`);
    if (f.Key === "Label") throw validation("Kiln keeps no parameter labels: filter by Type or KeyId.");
    if (f.Option !== undefined && f.Option !== "Equals")
      throw new ApiError("InvalidFilterOption", `The following filter option is not valid: ${f.Option}. Valid options include: [Equals].`);
  }
  const matches = (p: Parameter & { KeyId?: string }) => filters.every((f) => (f.Values ?? []).includes(f.Key === "Type" ? p.Type : (p.KeyId ?? "")));
  const size = maxResults(input, 10);
  const token = member<string>(input, "NextToken", "string");
  if (path === "/aws/service" || isPublic(`${path}/`)) {
    const names = publicNames(ctx.catalogue);
    const { items, next } = await pageOf(
      async (after, limit) => {
        const from = after === undefined ? 0 : names.findIndex((n) => n > after);
        return from < 0 ? [] : names.slice(from, from + limit);
      },
      (name) => name,
      (name) => under(path, name, recursive) && matches(publicAnswer(ctx, ctx.catalogue.parameters.get(name)!)),
      size,
      token,
    );
    return { Parameters: items.map((name) => publicAnswer(ctx, ctx.catalogue.parameters.get(name)!)), NextToken: next };
  }
  const { items, next } = await pageOf(
    (after, limit) => ssmParametersAfter(ctx.meta.db, ctx, { prefix: path === "/" ? "/" : `${path}/`, after, limit }),
    (row) => row.name,
    (row) => under(path, row.name, recursive) && matches({ ...ownAnswer(ctx, row, false), KeyId: row.key_id ?? undefined }),
    size,
    token,
  );
  return { Parameters: items.map((row) => ownAnswer(ctx, row, withDecryption)), NextToken: next };
}

async function putParameter(ctx: SsmContext, input: Json) {
  const name = nameFrom(member<string>(input, "Name", "string", true)!);
  const value = member<string>(input, "Value", "string", true)!;
  checkNewName(name);
  const overwrite = member<boolean>(input, "Overwrite", "boolean") ?? false;
  const tags = tagsOf(input);
  if (overwrite && tags.length) {
    throw validation(
      "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags on an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
    );
  }
  const existing = await ssmParameter(ctx.meta.db, ctx, name);
  if (existing && !overwrite)
    throw new ApiError("ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.");
  const type = member<string>(input, "Type", "string") ?? existing?.type;
  if (!type) throw validation("A parameter type is required when you create a parameter.");
  if (!TYPES.includes(type))
    throw new ApiError("UnsupportedParameterType", `The parameter type ${type} is not supported. Use String, StringList or SecureString.`);
  if (existing && existing.type !== type && (existing.type === "SecureString") !== (type === "SecureString")) {
    throw validation(`The parameter ${name} is a ${existing.type}; a SecureString and a plain parameter cannot change into each other.`);
  }
  const dataType = member<string>(input, "DataType", "string") ?? existing?.data_type ?? "text";
  if (!DATA_TYPES.includes(dataType))
    throw validation(`The data type ${dataType} is not valid. Valid data types include: [text, aws:ec2:image, aws:ssm:integration].`);
  if (dataType === "aws:ec2:image" && (type !== "String" || !AMI_ID.test(value))) {
    throw validation(
      `Parameter value, ${value}, is not an AMI ID of the form ami-0123456789abcdef0, which the data type aws:ec2:image requires of a String parameter.`,
    );
  }
  let tier = member<string>(input, "Tier", "string") ?? existing?.tier ?? "Standard";
  if (tier === "Intelligent-Tiering") tier = value.length > VALUE_LIMIT.Standard! ? "Advanced" : "Standard";
  if (!(tier in VALUE_LIMIT))
    throw validation(`Value '${tier}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Standard, Advanced, Intelligent-Tiering]`);
  if (value.length < 1 || value.length > VALUE_LIMIT[tier]!)
    throw validation(`Value at 'value' failed to satisfy constraint: Member must have length between 1 and ${VALUE_LIMIT[tier]}`);
  const allowedPattern = member<string>(input, "AllowedPattern", "string") ?? existing?.allowed_pattern ?? null;
  if (allowedPattern !== null && !matchesPattern(allowedPattern, value)) {
    throw new ApiError(
      "ParameterPatternMismatchException",
      `Parameter value, ${value}, failed to satisfy constraint specified in AllowedPattern: ${allowedPattern}`,
    );
  }
  const keyId = type === "SecureString" ? (member<string>(input, "KeyId", "string") ?? existing?.key_id ?? "alias/aws/ssm") : null;
  if (type !== "SecureString" && input.KeyId !== undefined) throw validation("KeyId is required for SecureString type parameter only.");
  const row = {
    type,
    value,
    description: member<string>(input, "Description", "string") ?? existing?.description ?? null,
    allowed_pattern: allowedPattern,
    tier,
    data_type: dataType,
    key_id: keyId,
    last_modified: new Date().toISOString(),
  };
  if (existing) {
    const version = await overwriteSsmParameter(ctx.meta.db, ctx, name, row);
    if (version === undefined) throw notFound(name);
    return { Version: version, Tier: tier };
  }
  if ((await countSsmParameters(ctx.meta.db, ctx)) >= MAX_PARAMETERS) {
    throw new ApiError(
      "ParameterLimitExceeded",
      `You have exceeded the number of parameters for this AWS account (${MAX_PARAMETERS}). Delete unused parameters and try again.`,
    );
  }
  if (!(await insertSsmParameter(ctx.meta.db, ctx, name, row, tags))) {
    throw new ApiError("ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.");
  }
  return { Version: 1, Tier: tier };
}

function tagsOf(input: Json): [string, string][] {
  const list = member<unknown[]>(input, "Tags", "array") ?? [];
  const tags = list.map((item): [string, string] => {
    if (typeof item !== "object" || item === null) throw new ApiError("SerializationException", "Tags must be a list of tags.");
    const tag = item as Json;
    const key = member<string>(tag, "Key", "string", true)!;
    const value = member<string>(tag, "Value", "string", true)!;
    if (key.length < 1 || key.length > 128)
      throw validation(`Value '${key}' at 'tags.key' failed to satisfy constraint: Member must have length between 1 and 128`);
    if (value.length > 256) throw validation(`Value at 'tags.value' failed to satisfy constraint: Member must have length less than or equal to 256`);
    if (/^aws:/i.test(key)) throw validation("Tag keys that begin with aws: are reserved for AWS use.");
    return [key, value];
  });
  if (tags.length > MAX_TAGS) throw new ApiError("TooManyTagsError", `A resource can have at most ${MAX_TAGS} tags.`);
  return tags;
}

async function deleteParameter(ctx: SsmContext, input: Json) {
  const name = nameFrom(member<string>(input, "Name", "string", true)!);
  const [deleted] = await deleteSsmParameters(ctx.meta.db, ctx, [name]);
  if (!deleted) throw notFound(name);
  return {};
}

async function deleteParameters(ctx: SsmContext, input: Json) {
  const names = strings(input, "Names", true)!.map(nameFrom);
  if (names.length < 1 || names.length > 10) throw validation(`Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10`);
  const deleted = new Set(await deleteSsmParameters(ctx.meta.db, ctx, names));
  return { DeletedParameters: [...deleted], InvalidParameters: [...new Set(names)].filter((n) => !deleted.has(n)) };
}

const DESCRIBE_KEYS = ["Name", "Type", "KeyId", "Path", "Tier", "DataType"];

async function describeParameters(ctx: SsmContext, input: Json) {
  const legacy = filtersOf(input, "Filters");
  const filters = filtersOf(input, "ParameterFilters");
  if (legacy.length && filters.length) throw validation("You can use either Filters or ParameterFilters in a single request.");
  for (const f of legacy) {
    if (!["Name", "Type", "KeyId"].includes(f.Key))
      throw new ApiError("InvalidFilterKey", `The following filter key is not valid: ${f.Key}. Valid filter keys include: [Name, Type, KeyId].`);
  }
  const all = [...legacy.map((f) => ({ ...f, Option: f.Key === "Name" ? "BeginsWith" : "Equals" })), ...filters];
  for (const f of filters) {
    if (!DESCRIBE_KEYS.includes(f.Key) && !f.Key.startsWith("tag:")) {
      throw new ApiError(
        "InvalidFilterKey",
        `The following filter key is not valid: ${f.Key}. Valid filter keys include: [${DESCRIBE_KEYS.join(", ")}, tag:<key>].`,
      );
    }
    const options = f.Key === "Path" ? ["Recursive", "OneLevel"] : f.Key === "Name" || f.Key.startsWith("tag:") ? ["Equals", "BeginsWith"] : ["Equals"];
    if (f.Option !== undefined && !options.includes(f.Option))
      throw new ApiError("InvalidFilterOption", `The following filter option is not valid: ${f.Option}. Valid options include: [${options.join(", ")}].`);
    if (f.Key === "Path" && !(f.Values ?? []).every((v) => v.startsWith("/")))
      throw new ApiError("InvalidFilterValue", 'A Path filter value must begin with a forward slash "/".');
  }
  const test = (f: Filter, row: SsmParameterRow): boolean => {
    const values = f.Values ?? [];
    const tags = f.Key.startsWith("tag:") ? new Map(JSON.parse(row.tags) as [string, string][]) : undefined;
    switch (f.Key) {
      case "Name": {
        // Names match with or without their leading slash.
        const bare = (n: string) => n.replace(/^\//, "");
        return values.some((v) => (f.Option === "BeginsWith" ? bare(row.name).startsWith(bare(v)) : bare(row.name) === bare(v)));
      }
      case "Type":
        return values.includes(row.type);
      case "KeyId":
        return row.key_id !== null && values.includes(row.key_id);
      case "Path":
        return values.some((v) => under(v.length > 1 ? v.replace(/\/$/, "") : v, row.name, f.Option === "Recursive"));
      case "Tier":
        return values.includes(row.tier);
      case "DataType":
        return values.includes(row.data_type);
      default: {
        const value = tags!.get(f.Key.slice(4));
        if (value === undefined) return false;
        return values.length === 0 || values.some((v) => (f.Option === "BeginsWith" ? value.startsWith(v) : value === v));
      }
    }
  };
  const { items, next } = await pageOf(
    (after, limit) => ssmParametersAfter(ctx.meta.db, ctx, { after, limit }),
    (row) => row.name,
    (row) => all.every((f) => test(f, row)),
    maxResults(input, 50),
    member<string>(input, "NextToken", "string"),
  );
  return {
    Parameters: items.map((row) => ({
      Name: row.name,
      ARN: arnOf(ctx.region, ctx.accountId, row.name),
      Type: row.type,
      KeyId: row.key_id ?? undefined,
      LastModifiedDate: new Date(row.last_modified),
      LastModifiedUser: `arn:aws:iam::${ctx.accountId}:root`,
      Description: row.description ?? undefined,
      AllowedPattern: row.allowed_pattern ?? undefined,
      Version: row.version,
      Tier: row.tier,
      Policies: [],
      DataType: row.data_type,
    })),
    NextToken: next,
  };
}

/** The parameter a tagging request names: only parameters carry tags here. */
function taggedParameter(input: Json): string {
  const type = member<string>(input, "ResourceType", "string", true)!;
  const id = member<string>(input, "ResourceId", "string", true)!;
  if (type !== "Parameter") throw new ApiError("InvalidResourceType", `Kiln's Parameter Store tags parameters only, not resources of type ${type}.`);
  return nameFrom(id);
}

const noSuchResource = (name: string) => new ApiError("InvalidResourceId", `The resource ID "${name}" is not valid. Verify the ID and try again.`);

async function addTagsToResource(ctx: SsmContext, input: Json) {
  const name = taggedParameter(input);
  const added = tagsOf(input);
  let tooMany = false;
  const found = await changeSsmParameterTags(ctx.meta.db, ctx, name, (tags) => {
    const merged = new Map(tags);
    for (const [key, value] of added) merged.set(key, value);
    tooMany = merged.size > MAX_TAGS;
    return [...merged];
  });
  if (!found) throw noSuchResource(name);
  if (tooMany) throw new ApiError("TooManyTagsError", `A resource can have at most ${MAX_TAGS} tags.`);
  return {};
}

async function removeTagsFromResource(ctx: SsmContext, input: Json) {
  const name = taggedParameter(input);
  const keys = new Set(strings(input, "TagKeys", true));
  const found = await changeSsmParameterTags(ctx.meta.db, ctx, name, (tags) => tags.filter(([key]) => !keys.has(key)));
  if (!found) throw noSuchResource(name);
  return {};
}

async function listTagsForResource(ctx: SsmContext, input: Json) {
  const name = taggedParameter(input);
  const [row] = await ssmParametersNamed(ctx.meta.db, ctx, [name]);
  if (!row) throw noSuchResource(name);
  return { TagList: (JSON.parse(row.tags) as [string, string][]).map(([Key, Value]) => ({ Key, Value })) };
}

export const SSM_ACTIONS: Record<string, (ctx: SsmContext, input: Json) => Promise<object>> = {
  GetParameter: getParameter,
  GetParameters: getParameters,
  GetParametersByPath: getParametersByPath,
  PutParameter: putParameter,
  DeleteParameter: deleteParameter,
  DeleteParameters: deleteParameters,
  DescribeParameters: describeParameters,
  AddTagsToResource: addTagsToResource,
  RemoveTagsFromResource: removeTagsFromResource,
  ListTagsForResource: listTagsForResource,
};

/**
 * The AMI id an SSM parameter reference names (`resolve:ssm:/path`, `resolve:ssm:name:3`), as
 * EC2 resolves one given as an ImageId; undefined when `imageId` is no such reference.
 */
export async function resolveImageParameter(ctx: SsmContext, imageId: string): Promise<string | undefined> {
  if (!imageId.startsWith("resolve:ssm:")) return undefined;
  const reference = imageId.slice("resolve:ssm:".length);
  const found = await lookUp(ctx, reference, false).catch((error: unknown) => {
    if (error instanceof ApiError && error.code !== "InternalError")
      throw new ApiError("InvalidParameterValue", `The SSM parameter reference ${imageId} cannot be resolved: ${error.message}`);
    throw error;
  });
  if (!found)
    throw new ApiError("InvalidParameterValue", `The SSM parameter ${selectorOf(reference).name} named by ImageId ${imageId} does not exist in ${ctx.region}.`);
  if (found.Type === "SecureString" || !AMI_ID.test(found.Value)) {
    throw new ApiError(
      "InvalidParameterValue",
      `The SSM parameter ${found.Name} named by ImageId does not hold an AMI ID (a String of the form ami-0123456789abcdef0).`,
    );
  }
  return found.Value;
}
