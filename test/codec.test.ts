// The EC2 Query codec against the model: every shape kind decoded from each way a request can
// arrive, and encoded the way EC2 answers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiError } from "../src/protocol/errors.js";
import { decodeStructure } from "../src/protocol/ec2-query/decode.js";
import { encodeJsonResponse, encodeXmlError, encodeXmlResponse } from "../src/protocol/ec2-query/encode.js";
import { treeFromJson, treeFromPairs, treeFromXml } from "../src/protocol/ec2-query/params.js";
import { ec2Model, ServiceModel } from "../src/protocol/model.js";

const limits = { maxParameters: 1000, maxDepth: 16 };
const model = ec2Model();
const input = (action: string) => model.operations.get(action)!.input!;
const query = (text: string) => treeFromPairs(new URLSearchParams(text), limits);

const apiError = (code: string, message?: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ApiError, `expected ApiError, got ${String(error)}`);
  assert.equal(error.code, code);
  if (message) assert.match(error.message, message);
  return true;
};

const rejectsCode = (promise: Promise<unknown>, code: string, message?: RegExp) => assert.rejects(promise, apiError(code, message));

function throwsCode(fn: () => unknown, code: string, message?: RegExp) {
  assert.throws(fn, apiError(code, message));
}

// A small model with every shape kind EC2's model has, and maps, which it lacks.
const synthetic = new ServiceModel({
  metadata: { apiVersion: "2016-11-15", protocol: "ec2", xmlNamespace: "http://ec2.amazonaws.com/doc/2016-11-15" },
  operations: { Everything: { name: "Everything", input: { shape: "In" }, output: { shape: "Out" } } },
  shapes: {
    In: {
      type: "structure",
      required: ["Name"],
      members: {
        Name: { shape: "Str" },
        Flag: { shape: "Bool", locationName: "flag" },
        Count: { shape: "Int" },
        Big: { shape: "Long" },
        Ratio: { shape: "Double" },
        Fraction: { shape: "Float" },
        When: { shape: "Time" },
        Data: { shape: "Blob" },
        Kind: { shape: "Kind" },
        Labels: { shape: "Labels", queryName: "Label" },
        Nested: { shape: "Nested" },
        Attributes: { shape: "Attrs" },
      },
    },
    Out: {
      type: "structure",
      members: {
        Name: { shape: "Str", locationName: "name" },
        Labels: { shape: "Labels", locationName: "labelSet" },
        When: { shape: "Time", locationName: "when" },
        Data: { shape: "Blob", locationName: "data" },
        Attributes: { shape: "Attrs", locationName: "attributes" },
        Nested: { shape: "Nested", locationName: "nested" },
      },
    },
    Nested: { type: "structure", members: { Inner: { shape: "Str", locationName: "inner" }, Child: { shape: "Nested", locationName: "child" } } },
    Labels: { type: "list", member: { shape: "Str", locationName: "item" } },
    Attrs: { type: "map", key: { shape: "Str", locationName: "key" }, value: { shape: "Str", locationName: "value" } },
    Str: { type: "string", min: 1, max: 10 },
    Bool: { type: "boolean" },
    Int: { type: "integer" },
    Long: { type: "long" },
    Double: { type: "double" },
    Float: { type: "float" },
    Time: { type: "timestamp" },
    Blob: { type: "blob" },
    Kind: { type: "string", enum: ["small", "large"] },
  },
});
const everything = synthetic.operations.get("Everything")!;

describe("model", () => {
  it("loads the pinned EC2 model with its operations and namespace", () => {
    assert.equal(model.apiVersion, "2016-11-15");
    assert.equal(model.xmlNamespace, "http://ec2.amazonaws.com/doc/2016-11-15/");
    assert.ok(model.operations.size > 700, `only ${model.operations.size} operations`);
    for (const action of ["CreateImage", "CreateStoreImageTask", "CreateRestoreImageTask", "ImportImage", "DescribeTags"]) {
      assert.ok(model.operations.has(action), action);
    }
  });

  it("takes wire names from queryName, else the capitalised locationName, else the member name", () => {
    const wire = (action: string, member: string) => input(action).members.find((m) => m.name === member)!.wireName;
    assert.equal(wire("DescribeImages", "Owners"), "Owner");
    assert.equal(wire("DescribeImages", "ExecutableUsers"), "ExecutableBy");
    assert.equal(wire("DescribeImages", "ImageIds"), "ImageId");
    assert.equal(wire("ImportImage", "DiskContainers"), "DiskContainer");
    assert.equal(wire("ImportImage", "LicenseSpecifications"), "LicenseSpecifications");
    assert.equal(wire("DescribeImportImageTasks", "Filters"), "Filters");
    assert.equal(wire("CreateImage", "BlockDeviceMappings"), "BlockDeviceMapping");
    assert.equal(wire("DescribeTags", "DryRun"), "DryRun");
  });

  it("refuses a model that is not an ec2-protocol service", () => {
    assert.throws(() => new ServiceModel({ metadata: { protocol: "json" } } as never), /malformed/);
  });
});

describe("decoding query parameters", () => {
  it("decodes nested lists of structures by wire name", () => {
    const decoded = decodeStructure(
      query("Filter.1.Name=key&Filter.1.Value.1=a&Filter.1.Value.2=b&Filter.2.Name=value&Filter.2.Value.1=c&MaxResults=5"),
      input("DescribeTags"),
    );
    assert.deepEqual(decoded, {
      Filters: [
        { Name: "key", Values: ["a", "b"] },
        { Name: "value", Values: ["c"] },
      ],
      MaxResults: 5,
    });
  });

  it("accepts member names as well as wire names", () => {
    const byMember = decodeStructure(
      query("DiskContainers.1.Format=vmdk&DiskContainers.1.UserBucket.S3Bucket=b&DiskContainers.1.UserBucket.S3Key=k"),
      input("ImportImage"),
    );
    const byWire = decodeStructure(
      query("DiskContainer.1.Format=vmdk&DiskContainer.1.UserBucket.S3Bucket=b&DiskContainer.1.UserBucket.S3Key=k"),
      input("ImportImage"),
    );
    assert.deepEqual(byMember, byWire);
    assert.deepEqual(byWire, { DiskContainers: [{ Format: "vmdk", UserBucket: { S3Bucket: "b", S3Key: "k" } }] });
  });

  it("orders list members by index, whatever order and gaps they come in", () => {
    const decoded = decodeStructure(query("ResourceId.10=c&ResourceId.2=b&ResourceId.1=a&Tag.1.Key=k"), input("CreateTags"));
    assert.deepEqual(decoded.Resources, ["a", "b", "c"]);
  });

  it("decodes every scalar kind", () => {
    const decoded = decodeStructure(
      query(
        "Name=n&Flag=TRUE&Count=-42&Big=9007199254740991&Ratio=2.5e3&Fraction=0.25&When=2026-11-22T10:15:30.000Z&Data=aGVsbG8=&Kind=large&Label.1=x&Label.2=y",
      ),
      everything.input!,
    );
    assert.equal(decoded.Flag, true);
    assert.equal(decoded.Count, -42);
    assert.equal(decoded.Big, Number.MAX_SAFE_INTEGER);
    assert.equal(decoded.Ratio, 2500);
    assert.equal(decoded.Fraction, 0.25);
    assert.deepEqual(decoded.When, new Date("2026-11-22T10:15:30.000Z"));
    assert.equal(Buffer.from(decoded.Data as Uint8Array).toString(), "hello");
    assert.equal(decoded.Kind, "large");
    assert.deepEqual(decoded.Labels, ["x", "y"]);
    assert.deepEqual(decodeStructure(query("Name=n&When=1700000000"), everything.input!).When, new Date(1_700_000_000_000));
  });

  it("decodes maps as indexed key/value entries", () => {
    const decoded = decodeStructure(
      query("Name=n&Attributes.1.key=color&Attributes.1.value=red&Attributes.2.key=size&Attributes.2.value=xl"),
      everything.input!,
    );
    assert.deepEqual({ ...(decoded.Attributes as object) }, { color: "red", size: "xl" });
  });

  it("decodes recursive structures", () => {
    const decoded = decodeStructure(query("Name=n&Nested.Inner=a&Nested.Child.Inner=b&Nested.Child.Child.Inner=c"), everything.input!);
    assert.deepEqual(decoded.Nested, { Inner: "a", Child: { Inner: "b", Child: { Inner: "c" } } });
  });

  it("refuses values of the wrong type with InvalidParameterValue", () => {
    const bad: [string, RegExp][] = [
      ["Flag=yes", /Flag/],
      ["Count=1.5", /Count/],
      ["Count=2147483648", /Count/],
      ["Count=", /Count/],
      ["Big=99999999999999999999", /Big/],
      ["Ratio=abc", /Ratio/],
      ["When=yesterday", /When/],
      ["Data=%%%", /Data/],
      ["Kind=medium", /Kind.*allowed values.*small, large/],
      ["Nested=flat", /Nested/],
    ];
    for (const [params, message] of bad) throwsCode(() => decodeStructure(query(`Name=n&${params}`), everything.input!), "InvalidParameterValue", message);
  });

  it("enforces the model's string bounds", () => {
    throwsCode(() => decodeStructure(query("Name=elevenchars"), everything.input!), "InvalidParameterValue", /at most 10/);
    throwsCode(() => decodeStructure(query("Name="), everything.input!), "InvalidParameterValue", /at least 1/);
  });

  it("names the missing required parameter by its wire name", () => {
    throwsCode(() => decodeStructure(query("Tag.1.Key=a"), input("CreateTags")), "MissingParameter", /ResourceId/);
    throwsCode(() => decodeStructure(query("Flag=true"), everything.input!), "MissingParameter", /parameter Name/);
  });

  it("refuses unknown parameters at any depth", () => {
    throwsCode(() => decodeStructure(query("Bogus=1"), input("DescribeTags")), "UnknownParameter", /Bogus/);
    throwsCode(() => decodeStructure(query("Filter.1.Nme=key"), input("DescribeTags")), "UnknownParameter", /Filter\.1\.Nme/);
    // Case matters on the wire, as in EC2.
    throwsCode(() => decodeStructure(query("maxresults=5"), input("DescribeTags")), "UnknownParameter");
  });

  it("refuses one member given under both of its names", () => {
    throwsCode(() => decodeStructure(query("Filter.1.Name=a&Filters.1.Name=b"), input("DescribeTags")), "InvalidParameterCombination");
  });

  it("refuses a name used both as a value and as a structure", () => {
    throwsCode(() => query("Filter.1=x&Filter.1.Name=y"), "InvalidParameterCombination");
    throwsCode(() => query("Filter..Name=y"), "MalformedQueryString");
  });

  it("keeps prototype names as plain keys", () => {
    throwsCode(() => decodeStructure(query("__proto__.polluted=1"), input("DescribeTags")), "UnknownParameter", /__proto__/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("bounds the number of parameters and their depth", () => {
    const many = Array.from({ length: 1001 }, (_, i) => `ResourceId.${i + 1}=i-${i}`).join("&");
    throwsCode(() => query(many), "InvalidRequest", /more than 1000 parameters/);
    throwsCode(() => query(`${Array.from({ length: 17 }, () => "A").join(".")}=1`), "InvalidRequest", /deeper/);
  });
});

describe("decoding XML and JSON bodies", () => {
  it("reads an XML body by member names, with item lists", async () => {
    const { root, params } = await treeFromXml(
      `<?xml version="1.0"?><CreateStoreImageTask><ImageId>ami-1234567890abcdef0</ImageId><Bucket>my-bucket</Bucket>` +
        `<S3ObjectTags><item><Key>a</Key><Value>1 &amp; 2</Value></item><item><Key>b</Key><Value/></item></S3ObjectTags></CreateStoreImageTask>`,
      limits,
    );
    assert.equal(root, "CreateStoreImageTask");
    assert.deepEqual(decodeStructure(params, input("CreateStoreImageTask")), {
      ImageId: "ami-1234567890abcdef0",
      Bucket: "my-bucket",
      S3ObjectTags: [
        { Key: "a", Value: "1 & 2" },
        { Key: "b", Value: "" },
      ],
    });
  });

  it("reads repeated XML elements and single elements as lists", async () => {
    const repeated = await treeFromXml(
      "<DescribeTags><Filter><Name>key</Name><Value>a</Value><Value>b</Value></Filter><Filter><Name>value</Name><Value>c</Value></Filter></DescribeTags>",
      limits,
    );
    assert.deepEqual(decodeStructure(repeated.params, input("DescribeTags")).Filters, [
      { Name: "key", Values: ["a", "b"] },
      { Name: "value", Values: ["c"] },
    ]);
    const single = await treeFromXml("<DescribeTags><Filters><item><Name>key</Name><Values><item>a</item></Values></item></Filters></DescribeTags>", limits);
    assert.deepEqual(decodeStructure(single.params, input("DescribeTags")).Filters, [{ Name: "key", Values: ["a"] }]);
  });

  it("refuses DOCTYPEs and malformed XML", async () => {
    await rejectsCode(treeFromXml('<!DOCTYPE x [<!ENTITY a "aaaa">]><DescribeTags/>', limits), "InvalidRequest", /DOCTYPE/);
    await rejectsCode(treeFromXml("<DescribeTags><Filter></DescribeTags>", limits), "InvalidRequest", /not well formed/);
  });

  it("reads a large XML body (on a worker thread) as it reads a small one", async () => {
    const ids = Array.from({ length: 900 }, (_, i) => `vol-${i.toString(16).padStart(17, "0")}`);
    const document = `<DescribeVolumes><VolumeIds>${ids.map((id) => `<item>${id}</item>`).join("")}</VolumeIds></DescribeVolumes>`;
    assert.ok(document.length > 16 * 1024);
    const { root, params } = await treeFromXml(document, limits);
    assert.equal(root, "DescribeVolumes");
    assert.deepEqual(decodeStructure(params, input("DescribeVolumes")).VolumeIds, ids);
    await rejectsCode(treeFromXml(`${document.slice(0, -20)}</DescribeVolumes>`, limits), "InvalidRequest", /not well formed/);
  });

  it("reads a JSON body with native and string scalars", () => {
    const params = treeFromJson(JSON.stringify({ Filters: [{ Name: "key", Values: ["a"] }], MaxResults: 10, DryRun: false }), limits);
    assert.deepEqual(decodeStructure(params, input("DescribeTags")), { Filters: [{ Name: "key", Values: ["a"] }], MaxResults: 10, DryRun: false });
    const strings = treeFromJson(JSON.stringify({ MaxResults: "10", DryRun: "true" }), limits);
    assert.deepEqual(decodeStructure(strings, input("DescribeTags")), { MaxResults: 10, DryRun: true });
    throwsCode(() => treeFromJson("[1,2]", limits), "InvalidRequest");
    throwsCode(() => treeFromJson("{bad", limits), "InvalidRequest");
    throwsCode(() => decodeStructure(treeFromJson('{"MaxResults": 1.5}', limits), input("DescribeTags")), "InvalidParameterValue");
  });
});

/** An answer as text: written at once, or in pieces (a large answer). */
const text = async (answer: string | Promise<Buffer[]>) => (typeof answer === "string" ? answer : Buffer.concat(await answer).toString("utf8"));

describe("encoding", () => {
  it("writes EC2 XML: namespace, requestId, locationNames and item lists", async () => {
    const xml = await text(
      encodeXmlResponse(
        model,
        "DescribeTags",
        model.operations.get("DescribeTags")!.output,
        {
          Tags: [{ Key: "Name", Value: "a<b", ResourceId: "i-12345678", ResourceType: "instance" }],
          NextToken: "t",
        },
        "req-1",
      ),
    );
    assert.equal(
      xml,
      '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req-1</requestId>' +
        "<nextToken>t</nextToken><tagSet><item><key>Name</key><resourceId>i-12345678</resourceId><resourceType>instance</resourceType><value>a&lt;b</value></item></tagSet></DescribeTagsResponse>",
    );
  });

  it("answers <return>true</return> for actions without output", async () => {
    const xml = await text(encodeXmlResponse(model, "CreateTags", model.operations.get("CreateTags")!.output, undefined, "req-2"));
    assert.match(
      xml,
      /<CreateTagsResponse xmlns="http:\/\/ec2\.amazonaws\.com\/doc\/2016-11-15\/"><requestId>req-2<\/requestId><return>true<\/return><\/CreateTagsResponse>$/,
    );
  });

  it("writes timestamps with milliseconds, blobs in base64, maps, empty lists and nested structures", async () => {
    const xml = await text(
      encodeXmlResponse(
        synthetic,
        "Everything",
        everything.output,
        {
          Name: "n",
          Labels: [],
          When: new Date("2026-11-22T10:15:30Z"),
          Data: Buffer.from("hello"),
          Attributes: { color: "red" },
          Nested: { Inner: "a", Child: { Inner: "b" } },
          NotInModel: "ignored",
        },
        "r",
      ),
    );
    assert.match(xml, /<name>n<\/name><labelSet\/><when>2026-11-22T10:15:30\.000Z<\/when><data>aGVsbG8=<\/data>/);
    assert.match(xml, /<attributes><item><key>color<\/key><value>red<\/value><\/item><\/attributes>/);
    assert.match(xml, /<nested><inner>a<\/inner><child><inner>b<\/inner><\/child><\/nested>/);
    assert.doesNotMatch(xml, /ignored/);
  });

  it("writes errors in EC2's envelope with RequestID", () => {
    assert.equal(
      encodeXmlError("InvalidParameterValue", "bad <value>", "r-9"),
      '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>bad &lt;value&gt;</Message></Error></Errors><RequestID>r-9</RequestID></Response>',
    );
  });

  it("writes a large answer in pieces, byte for byte as it writes a small one", async () => {
    const tag = (i: number) => ({ Key: `k${i}`, Value: `v<${i}>`, ResourceId: `i-${String(i).padStart(8, "0")}`, ResourceType: "instance" });
    const output = model.operations.get("DescribeTags")!.output;
    const item = (i: number) =>
      `<item><key>k${i}</key><resourceId>i-${String(i).padStart(8, "0")}</resourceId><resourceType>instance</resourceType><value>v&lt;${i}&gt;</value></item>`;
    const tags = Array.from({ length: 5000 }, (_, i) => tag(i));
    const large = encodeXmlResponse(model, "DescribeTags", output, { Tags: tags }, "r");
    assert.ok(typeof large !== "string", "a large answer is written in pieces");
    const pieces = await large;
    assert.ok(pieces.length > 1, "of more than one piece");
    const expected =
      '<?xml version="1.0" encoding="UTF-8"?>\n<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>' +
      `<tagSet>${tags.map((_, i) => item(i)).join("")}</tagSet></DescribeTagsResponse>`;
    assert.ok(Buffer.concat(pieces).toString("utf8") === expected, "the XML written in pieces is the whole answer");
    const small = encodeXmlResponse(model, "DescribeTags", output, { Tags: tags.slice(0, 3) }, "r");
    assert.equal(typeof small, "string", "a small answer is written at once");
    const json = encodeJsonResponse(output, { Tags: tags }, "r");
    assert.ok(typeof json !== "string");
    // As JSON.stringify writes it, members in the model's order.
    const ordered = tags.map(({ Key, ResourceId, ResourceType, Value }) => ({ Key, ResourceId, ResourceType, Value }));
    assert.ok((await text(json)) === JSON.stringify({ RequestId: "r", Tags: ordered }), "the JSON written in pieces is JSON.stringify's");
  });

  it("writes JSON by member names", async () => {
    const nested = { Labels: ["a", "b"], Attributes: { color: "red" }, Nested: { Inner: "a", Child: { Inner: "b" } } };
    const value = { Name: 'n "quoted"', When: new Date(0), Data: Buffer.from("hi"), ...nested };
    const written = await text(encodeJsonResponse(everything.output, value, "r"));
    const json = JSON.parse(written);
    assert.deepEqual(json, { RequestId: "r", Name: 'n "quoted"', When: "1970-01-01T00:00:00.000Z", Data: "aGk=", ...nested });
    // Written as JSON.stringify writes it.
    assert.equal(written, JSON.stringify(json));
  });
});
