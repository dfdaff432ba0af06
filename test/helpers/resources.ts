// Real resources for tests that need something to act on (tags, filters): Kiln refuses tags on
// instances, volumes, snapshots and images that do not exist, as EC2 does.
import { CreateSnapshotCommand, CreateVolumeCommand, DescribeImagesCommand, RunInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";

const regionOf = async (ec2: EC2Client) => (typeof ec2.config.region === "function" ? await ec2.config.region() : ec2.config.region) as string;

/** `count` empty 1 GiB volumes, in zone a of the client's region. */
export async function createVolumes(ec2: EC2Client, count: number): Promise<string[]> {
  const zone = `${await regionOf(ec2)}a`;
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await ec2.send(new CreateVolumeCommand({ AvailabilityZone: zone, Size: 1 }))).VolumeId!);
  return ids;
}

/** A snapshot of a new empty volume. */
export async function createSnapshot(ec2: EC2Client): Promise<string> {
  const [volumeId] = await createVolumes(ec2, 1);
  return (await ec2.send(new CreateSnapshotCommand({ VolumeId: volumeId }))).SnapshotId!;
}

/** The public catalogue's Amazon Linux 2023 image in the client's region. */
export async function catalogueImage(ec2: EC2Client): Promise<string> {
  const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["al2023-ami-2023*-x86_64"] }] }));
  if (!Images?.length) throw new Error("the catalogue holds no Amazon Linux 2023 image");
  return Images[0]!.ImageId!;
}

/** `count` instances of the catalogue's Amazon Linux 2023 image. */
export async function launchInstances(ec2: EC2Client, count: number): Promise<string[]> {
  const ImageId = await catalogueImage(ec2);
  const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId, InstanceType: "t3.micro", MinCount: count, MaxCount: count }));
  return Instances!.map((i) => i.InstanceId!);
}
