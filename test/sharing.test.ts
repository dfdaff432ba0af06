// Launch permissions really share an image: visible and launchable in the other account, not
// before and not after; the group `all` makes it public.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  ModifyImageAttributeCommand,
  RegisterImageCommand,
  ResetImageAttributeCommand,
  RunInstancesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { BLOCK, errorName, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

const OWNER = "000000000000";
const FRIEND = "222233334444";
const STRANGER = "555566667777";
let kiln: TestKiln;
let owner: EC2Client;
let friend: EC2Client;
let stranger: EC2Client;
let imageId: string;

before(async () => {
  kiln = await startTestKiln();
  owner = kiln.ec2();
  friend = kiln.ec2({ accessKeyId: FRIEND });
  stranger = kiln.ec2({ accessKeyId: STRANGER });
  const SnapshotId = await writeSnapshot(kiln, new Map([[0, randomBytes(BLOCK)]]), { size: 1 });
  ({ ImageId: imageId } = (await owner.send(
    new RegisterImageCommand({
      Name: "shared",
      RootDeviceName: "/dev/xvda",
      Architecture: "x86_64",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
    }),
  )) as { ImageId: string });
});
after(() => kiln.close());

const sees = async (client: EC2Client) => ((await client.send(new DescribeImagesCommand({ Owners: [OWNER] }))).Images ?? []).map((i) => i.ImageId);
const permissions = async () => (await owner.send(new DescribeImageAttributeCommand({ ImageId: imageId, Attribute: "launchPermission" }))).LaunchPermissions;

describe("launch permissions", () => {
  it("shares an image with one account: visible and launchable there only while shared", async () => {
    assert.deepEqual(await sees(friend), []);
    assert.equal(await errorName(friend.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }))), "InvalidAMIID.NotFound");

    await owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, LaunchPermission: { Add: [{ UserId: FRIEND }] } }));
    assert.deepEqual(await permissions(), [{ UserId: FRIEND }]);
    assert.deepEqual(await sees(friend), [imageId]);
    assert.deepEqual(
      ((await friend.send(new DescribeImagesCommand({ ExecutableUsers: ["self"] }))).Images ?? []).map((i) => i.ImageId),
      [imageId],
    );
    assert.deepEqual(await sees(stranger), []);
    const launched = await friend.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }));
    assert.equal(launched.OwnerId, FRIEND);
    assert.equal(launched.Instances![0]!.ImageId, imageId);

    // Only the owner changes or reads the permissions.
    assert.equal(
      await errorName(friend.send(new ModifyImageAttributeCommand({ ImageId: imageId, LaunchPermission: { Add: [{ UserId: STRANGER }] } }))),
      "AuthFailure",
    );
    assert.equal(await errorName(friend.send(new DescribeImageAttributeCommand({ ImageId: imageId, Attribute: "launchPermission" }))), "AuthFailure");

    await owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, Attribute: "launchPermission", OperationType: "remove", UserIds: [FRIEND] }));
    assert.deepEqual(await permissions(), []);
    assert.deepEqual(await sees(friend), []);
    assert.equal(await errorName(friend.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }))), "InvalidAMIID.NotFound");
  });

  it("makes an image public with the group all, and private again with a reset", async () => {
    await owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, Attribute: "launchPermission", OperationType: "add", UserGroups: ["all"] }));
    const shown = (await stranger.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images![0]!;
    assert.equal(shown.Public, true);
    assert.deepEqual(
      ((await stranger.send(new DescribeImagesCommand({ Owners: [OWNER], Filters: [{ Name: "is-public", Values: ["true"] }] }))).Images ?? []).map(
        (i) => i.ImageId,
      ),
      [imageId],
    );
    assert.deepEqual(
      ((await stranger.send(new DescribeImagesCommand({ Owners: [OWNER], ExecutableUsers: ["all"] }))).Images ?? []).map((i) => i.ImageId),
      [imageId],
    );
    await owner.send(new ResetImageAttributeCommand({ ImageId: imageId, Attribute: "launchPermission" }));
    assert.deepEqual(await sees(stranger), []);
    assert.equal((await owner.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images![0]!.Public, false);
  });

  it("changes the description and refuses bad grantees", async () => {
    await owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, Description: { Value: "now described" } }));
    assert.deepEqual((await owner.send(new DescribeImageAttributeCommand({ ImageId: imageId, Attribute: "description" }))).Description, {
      Value: "now described",
    });
    assert.equal(
      await errorName(owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, LaunchPermission: { Add: [{ UserId: "12" }] } }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(owner.send(new ModifyImageAttributeCommand({ ImageId: imageId, LaunchPermission: { Add: [{ Group: "everyone" as "all" }] } }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(owner.send(new DescribeImageAttributeCommand({ ImageId: "ami-0123456789abcdef0", Attribute: "description" }))),
      "InvalidAMIID.NotFound",
    );
  });
});
