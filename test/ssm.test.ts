// SSM Parameter Store on Kiln's port, through @aws-sdk/client-ssm and the AWS CLI: the public AMI
// parameters name the catalogue's newest images in each region; an account's own parameters are
// kept, versioned, tagged, filtered and isolated; RunInstances launches `resolve:ssm:` image ids.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DescribeImagesCommand, DescribeInstancesCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import {
  AddTagsToResourceCommand,
  DeleteParameterCommand,
  DeleteParametersCommand,
  DescribeParametersCommand,
  GetParameterCommand,
  GetParametersByPathCommand,
  GetParametersCommand,
  ListCommandsCommand,
  ListTagsForResourceCommand,
  paginateDescribeParameters,
  paginateGetParametersByPath,
  PutParameterCommand,
  RemoveTagsFromResourceCommand,
  type Parameter,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { signedRequest } from "./helpers/signed.js";
import { AWS_CLIENT_ENV, run } from "./helpers/tools.js";

let kiln: TestKiln;
let ssm: SSMClient;
before(async () => {
  kiln = await startTestKiln();
  ssm = kiln.ssm();
});
after(() => kiln.close());

const AL = "/aws/service/ami-amazon-linux-latest";

async function byPath(client: SSMClient, Path: string, Recursive = false): Promise<Parameter[]> {
  const found: Parameter[] = [];
  for await (const page of paginateGetParametersByPath({ client, pageSize: 10 }, { Path, Recursive })) found.push(...page.Parameters!);
  return found;
}

const imageNamed = async (region: string, imageId: string) => (await kiln.ec2({ region }).send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images![0]!;

describe("SSM public parameters", () => {
  it("lists the Amazon Linux parameters a page at a time, each naming the newest image of its kind", async () => {
    const parameters = await byPath(ssm, AL);
    assert.equal(parameters.length, 22);
    const value = Object.fromEntries(parameters.map((p) => [p.Name!.slice(AL.length + 1), p.Value!]));
    assert.equal((await imageNamed("us-east-1", value["al2023-ami-kernel-default-x86_64"]!)).Name, "al2023-ami-2023.11.20260427.1-kernel-6.1-x86_64");
    assert.equal((await imageNamed("us-east-1", value["al2023-ami-kernel-6.12-arm64"]!)).Name, "al2023-ami-2023.11.20260427.1-kernel-6.12-arm64");
    assert.equal((await imageNamed("us-east-1", value["amzn2-ami-minimal-hvm-x86_64-ebs"]!)).Name, "amzn2-ami-minimal-hvm-2.0.20260427.1-x86_64-ebs");
    const [first] = parameters;
    assert.equal(first!.Type, "String");
    assert.equal(first!.DataType, "text");
    assert.equal(first!.ARN, `arn:aws:ssm:us-east-1::parameter${first!.Name}`);
    assert.ok(first!.LastModifiedDate instanceof Date && first!.Version! >= 1);
  });

  it("answers one level, or every level with Recursive, and other ids in other regions", async () => {
    const current = "/aws/service/canonical/ubuntu/server/22.04/stable/current";
    assert.deepEqual(await byPath(ssm, current), []);
    const below = (await byPath(ssm, current, true)).map((p) => p.Name!.slice(current.length + 1)).sort();
    assert.deepEqual(below, ["amd64/hvm/ebs-gp2/ami-id", "amd64/hvm/ebs-gp3/ami-id", "arm64/hvm/ebs-gp2/ami-id", "arm64/hvm/ebs-gp3/ami-id"]);
    const name = `${current}/amd64/hvm/ebs-gp2/ami-id`;
    const here = (await ssm.send(new GetParameterCommand({ Name: name }))).Parameter!.Value!;
    const there = (await kiln.ssm({ region: "eu-west-1" }).send(new GetParameterCommand({ Name: name }))).Parameter!.Value!;
    assert.notEqual(here, there);
    assert.equal((await imageNamed("eu-west-1", there)).Name, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20261119");
    const windows = (await ssm.send(new GetParameterCommand({ Name: "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base" }))).Parameter!;
    assert.equal((await imageNamed("us-east-1", windows.Value!)).Platform, "windows");
    assert.equal(await errorName(ssm.send(new GetParametersByPathCommand({ Path: AL, MaxResults: 11 }))), "ValidationException");
  });
});

describe("SSM account parameters", () => {
  it("keeps versions, refuses to overwrite unasked, and resolves version selectors", async () => {
    assert.deepEqual(await ssm.send(new PutParameterCommand({ Name: "/app/db/host", Type: "String", Value: "db-1" })).then((r) => [r.Version, r.Tier]), [
      1,
      "Standard",
    ]);
    assert.equal(await errorName(ssm.send(new PutParameterCommand({ Name: "/app/db/host", Type: "String", Value: "db-2" }))), "ParameterAlreadyExists");
    assert.equal((await ssm.send(new PutParameterCommand({ Name: "/app/db/host", Value: "db-2", Overwrite: true }))).Version, 2);
    const { Parameter } = await ssm.send(new GetParameterCommand({ Name: "/app/db/host" }));
    assert.deepEqual(
      [Parameter!.Value, Parameter!.Version, Parameter!.Type, Parameter!.ARN],
      ["db-2", 2, "String", "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/host"],
    );
    assert.equal((await ssm.send(new GetParameterCommand({ Name: "/app/db/host:2" }))).Parameter!.Selector, ":2");
    assert.equal(await errorName(ssm.send(new GetParameterCommand({ Name: "/app/db/host:1" }))), "ParameterVersionNotFound");
    // By ARN, as the CDK and IAM-minded tools name parameters.
    assert.equal((await ssm.send(new GetParameterCommand({ Name: "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/host" }))).Parameter!.Value, "db-2");
    const { Parameters, InvalidParameters } = await ssm.send(
      new GetParametersCommand({ Names: ["/app/db/host", `${AL}/al2023-ami-kernel-default-arm64`, "/app/none"] }),
    );
    assert.deepEqual(
      Parameters!.map((p) => p.Name),
      ["/app/db/host", `${AL}/al2023-ami-kernel-default-arm64`],
    );
    assert.deepEqual(InvalidParameters, ["/app/none"]);
  });

  it("hides a SecureString's value unless asked to decrypt, and keeps StringLists as given", async () => {
    await ssm.send(new PutParameterCommand({ Name: "/app/db/password", Type: "SecureString", Value: "hunter2" }));
    await ssm.send(new PutParameterCommand({ Name: "/app/zones", Type: "StringList", Value: "a,b,c" }));
    const sealed = (await ssm.send(new GetParameterCommand({ Name: "/app/db/password" }))).Parameter!;
    assert.equal(sealed.Type, "SecureString");
    assert.ok(!sealed.Value!.includes("hunter2"));
    assert.equal((await ssm.send(new GetParameterCommand({ Name: "/app/db/password", WithDecryption: true }))).Parameter!.Value, "hunter2");
    const described = (await ssm.send(new DescribeParametersCommand({ ParameterFilters: [{ Key: "Name", Values: ["/app/db/password"] }] }))).Parameters!;
    assert.deepEqual(
      described.map((p) => [p.Name, p.Type, p.KeyId]),
      [["/app/db/password", "SecureString", "alias/aws/ssm"]],
    );
    assert.equal((await ssm.send(new GetParameterCommand({ Name: "/app/zones" }))).Parameter!.Value, "a,b,c");
  });

  it("lists a hierarchy by path and by DescribeParameters filters, a page at a time", async () => {
    for (const name of ["/team/a/one", "/team/a/two", "/team/a/deep/three", "/team/b/four", "/team/five"]) {
      await ssm.send(
        new PutParameterCommand({ Name: name, Type: "String", Value: name, Tags: [{ Key: "Owner", Value: name.includes("/a/") ? "alpha" : "beta" }] }),
      );
    }
    assert.deepEqual((await byPath(ssm, "/team/a")).map((p) => p.Name).sort(), ["/team/a/one", "/team/a/two"]);
    assert.deepEqual((await byPath(ssm, "/team/a/", true)).map((p) => p.Name).sort(), ["/team/a/deep/three", "/team/a/one", "/team/a/two"]);
    const describe = async (ParameterFilters: { Key: string; Option?: string; Values: string[] }[]) => {
      const names: string[] = [];
      for await (const page of paginateDescribeParameters({ client: ssm, pageSize: 2 }, { ParameterFilters }))
        names.push(...page.Parameters!.map((p) => p.Name!));
      return names;
    };
    assert.deepEqual(await describe([{ Key: "Path", Option: "Recursive", Values: ["/team"] }]), [
      "/team/a/deep/three",
      "/team/a/one",
      "/team/a/two",
      "/team/b/four",
      "/team/five",
    ]);
    assert.deepEqual(await describe([{ Key: "Path", Option: "OneLevel", Values: ["/team"] }]), ["/team/five"]);
    assert.deepEqual(
      await describe([
        { Key: "Name", Option: "BeginsWith", Values: ["/team/a/"] },
        { Key: "tag:Owner", Values: ["alpha"] },
      ]),
      ["/team/a/deep/three", "/team/a/one", "/team/a/two"],
    );
    assert.deepEqual(await describe([{ Key: "Type", Values: ["StringList"] }]), ["/app/zones"]);
    assert.equal(await errorName(ssm.send(new DescribeParametersCommand({ ParameterFilters: [{ Key: "Colour", Values: ["red"] }] }))), "InvalidFilterKey");
    assert.equal(
      await errorName(ssm.send(new DescribeParametersCommand({ ParameterFilters: [{ Key: "Path", Option: "BeginsWith", Values: ["/team"] }] }))),
      "InvalidFilterOption",
    );
  });

  it("tags parameters, refusing tags with Overwrite as SSM does", async () => {
    await ssm.send(new PutParameterCommand({ Name: "tagged", Type: "String", Value: "v", Tags: [{ Key: "Team", Value: "images" }] }));
    await ssm.send(
      new AddTagsToResourceCommand({
        ResourceType: "Parameter",
        ResourceId: "tagged",
        Tags: [
          { Key: "Stage", Value: "prod" },
          { Key: "Team", Value: "platform" },
        ],
      }),
    );
    await ssm.send(new RemoveTagsFromResourceCommand({ ResourceType: "Parameter", ResourceId: "tagged", TagKeys: ["Stage"] }));
    assert.deepEqual((await ssm.send(new ListTagsForResourceCommand({ ResourceType: "Parameter", ResourceId: "tagged" }))).TagList, [
      { Key: "Team", Value: "platform" },
    ]);
    assert.equal(
      await errorName(ssm.send(new PutParameterCommand({ Name: "tagged", Type: "String", Value: "w", Overwrite: true, Tags: [{ Key: "A", Value: "b" }] }))),
      "ValidationException",
    );
    assert.equal(await errorName(ssm.send(new ListTagsForResourceCommand({ ResourceType: "Parameter", ResourceId: "untagged" }))), "InvalidResourceId");
    assert.equal(await errorName(ssm.send(new ListTagsForResourceCommand({ ResourceType: "Document", ResourceId: "tagged" }))), "InvalidResourceType");
  });

  it("refuses names, values and types SSM refuses", async () => {
    const put = (input: Partial<ConstructorParameters<typeof PutParameterCommand>[0]>) =>
      errorName(ssm.send(new PutParameterCommand({ Name: "/ok", Type: "String", Value: "v", ...input })));
    assert.equal(await put({ Name: "/aws/mine" }), "ValidationException");
    assert.equal(await put({ Name: "ssm-thing" }), "ValidationException");
    assert.equal(await put({ Name: "no/leading/slash" }), "ValidationException");
    assert.equal(await put({ Name: "/has space" }), "ValidationException");
    assert.equal(await put({ Name: `/${Array.from({ length: 16 }, (_, i) => `l${i}`).join("/")}` }), "HierarchyLevelLimitExceededException");
    assert.equal(await put({ Value: "x".repeat(4097) }), "ValidationException");
    assert.equal(await put({ Value: "abc", AllowedPattern: "^[0-9]+$" }), "ParameterPatternMismatchException");
    assert.equal(await put({ AllowedPattern: "([" }), "InvalidAllowedPatternException");
    // A pattern that backtracks without end is cut short, and the server answers on.
    const started = Date.now();
    assert.equal(await put({ AllowedPattern: "^(a+)+$", Value: `${"a".repeat(40)}b` }), "InvalidAllowedPatternException");
    assert.ok(Date.now() - started < 2000);
    assert.equal(await put({ DataType: "aws:ec2:image", Value: "not-an-ami" }), "ValidationException");
    assert.equal(await put({ Type: "Binary" as never }), "UnsupportedParameterType");
    assert.equal(await errorName(ssm.send(new GetParameterCommand({ Name: "/ok" }))), "ParameterNotFound");
  });

  it("deletes one or several, and says which were not there", async () => {
    await ssm.send(new PutParameterCommand({ Name: "/gone/one", Type: "String", Value: "1" }));
    await ssm.send(new PutParameterCommand({ Name: "/gone/two", Type: "String", Value: "2" }));
    await ssm.send(new DeleteParameterCommand({ Name: "/gone/one" }));
    assert.equal(await errorName(ssm.send(new DeleteParameterCommand({ Name: "/gone/one" }))), "ParameterNotFound");
    const { DeletedParameters, InvalidParameters } = await ssm.send(new DeleteParametersCommand({ Names: ["/gone/two", "/gone/three"] }));
    assert.deepEqual([DeletedParameters, InvalidParameters], [["/gone/two"], ["/gone/three"]]);
  });

  it("keeps each account's parameters to itself", async () => {
    await ssm.send(new PutParameterCommand({ Name: "/private/key", Type: "String", Value: "mine" }));
    const other = kiln.ssm({ accessKeyId: "111122223333" });
    assert.equal(await errorName(other.send(new GetParameterCommand({ Name: "/private/key" }))), "ParameterNotFound");
    assert.deepEqual((await other.send(new DescribeParametersCommand({}))).Parameters, []);
    await other.send(new PutParameterCommand({ Name: "/private/key", Type: "String", Value: "theirs" }));
    assert.equal((await ssm.send(new GetParameterCommand({ Name: "/private/key" }))).Parameter!.Value, "mine");
    assert.equal(await errorName(kiln.ssm({ region: "eu-west-1" }).send(new GetParameterCommand({ Name: "/private/key" }))), "ParameterNotFound");
  });
});

describe("SSM on the wire", () => {
  it("answers an action it lacks with UnsupportedOperationException, and bad JSON with SerializationException", async () => {
    const error = await ssm.send(new ListCommandsCommand({})).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.equal(error?.name, "UnsupportedOperationException");
    assert.match(error!.message, /does not do ListCommands\. It answers the Parameter Store actions GetParameter, /);
    const raw = await signedRequest(kiln.url, {
      service: "ssm",
      body: "{not json",
      contentType: "application/x-amz-json-1.1",
      headers: { "x-amz-target": "AmazonSSM.GetParameter" },
    });
    assert.equal(raw.status, 400);
    assert.equal(JSON.parse(raw.text).__type, "SerializationException");
    const wrongType = await signedRequest(kiln.url, {
      service: "ssm",
      body: JSON.stringify({ Name: 7 }),
      contentType: "application/x-amz-json-1.1",
      headers: { "x-amz-target": "AmazonSSM.GetParameter" },
    });
    assert.equal(JSON.parse(wrongType.text).__type, "SerializationException");
    // A signature for another service is not an SSM request's.
    const ec2Signed = await signedRequest(kiln.url, {
      service: "ec2",
      body: "{}",
      contentType: "application/x-amz-json-1.1",
      headers: { "x-amz-target": "AmazonSSM.DescribeParameters" },
    });
    assert.equal(ec2Signed.status, 403);
    assert.equal(ec2Signed.headers.get("content-type"), "application/x-amz-json-1.1");
    assert.equal(JSON.parse(ec2Signed.text).__type, "SignatureDoesNotMatch");
  });
});

describe("resolve:ssm image ids", () => {
  it("launches the image a public or an account parameter names, at a version if asked", async () => {
    const ec2 = kiln.ec2();
    const launched = async (ImageId: string) => {
      const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" }));
      const [reservation] = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [Instances![0]!.InstanceId!] }))).Reservations!;
      return reservation!.Instances![0]!.ImageId!;
    };
    const latest = (await ssm.send(new GetParameterCommand({ Name: `${AL}/al2023-ami-kernel-default-x86_64` }))).Parameter!.Value!;
    assert.equal(await launched(`resolve:ssm:${AL}/al2023-ami-kernel-default-x86_64`), latest);
    const ubuntu = (await byPath(ssm, "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64", true))[0]!.Value!;
    await ssm.send(new PutParameterCommand({ Name: "/golden/ami", Type: "String", DataType: "aws:ec2:image", Value: ubuntu }));
    await ssm.send(new PutParameterCommand({ Name: "/golden/ami", Value: latest, Overwrite: true }));
    assert.equal(await launched("resolve:ssm:/golden/ami"), latest);
    assert.equal(await launched("resolve:ssm:/golden/ami:2"), latest);
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: "resolve:ssm:/golden/ami:1", MinCount: 1, MaxCount: 1 }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: "resolve:ssm:/golden/none", MinCount: 1, MaxCount: 1 }))),
      "InvalidParameterValue",
    );
    await ssm.send(new PutParameterCommand({ Name: "/golden/not-an-image", Type: "String", Value: "hello" }));
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: "resolve:ssm:/golden/not-an-image", MinCount: 1, MaxCount: 1 }))),
      "InvalidParameterValue",
    );
  });
});

describe("the AWS CLI", () => {
  const aws = async (...args: string[]) =>
    JSON.parse(await run("aws", ["--endpoint-url", kiln.url, "--output", "json", ...args], { env: AWS_CLIENT_ENV })) as Record<string, unknown>;

  it("lists the Amazon Linux parameters, finds their images, and launches one by resolve:ssm", async () => {
    const { Parameters } = (await aws("ssm", "get-parameters-by-path", "--path", AL)) as { Parameters: { Name: string; Value: string }[] };
    assert.equal(Parameters.length, 22);
    const ids = [...new Set(Parameters.map((p) => p.Value))];
    const { Images } = (await aws("ec2", "describe-images", "--image-ids", ...ids)) as { Images: { ImageId: string }[] };
    assert.deepEqual(Images.map((i) => i.ImageId).sort(), ids.sort());
    const { Instances } = (await aws(
      "ec2",
      "run-instances",
      "--image-id",
      `resolve:ssm:${AL}/al2023-ami-kernel-default-x86_64`,
      "--instance-type",
      "t3.micro",
    )) as { Instances: { ImageId: string }[] };
    assert.equal(Instances[0]!.ImageId, Parameters.find((p) => p.Name === `${AL}/al2023-ami-kernel-default-x86_64`)!.Value);
  });
});
