// Part of `npm run build`: the built-in catalogue (catalogue/public-images.json) is data, so the
// build checks it as the compiler checks code: its schema, its references, one id per image in
// every region, one image per public parameter. A bad file fails the build, not a start.
import { readBuiltInCatalogue, withOperatorEntries } from "../dist/src/domain/catalogue.js";

try {
  const catalogue = withOperatorEntries(readBuiltInCatalogue(), []);
  console.log(`catalogue: ${catalogue.entries.length} images, ${catalogue.parameters.size} public SSM parameters`);
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
