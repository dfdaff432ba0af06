// The one error a disk image reader throws for a file it will not trust. Its message ends up in
// the import task's StatusMessage as `ClientError: Disk validation failed [<message>]`.
export class DiskImageError extends Error {
  override readonly name = "DiskImageError";
}
