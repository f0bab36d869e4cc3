// Profile → your card: a user without any device sets a name and uploads a picture (a real
// 400×300 PNG written by this test); the preview shows, a reload keeps both (GET
// /api/owntracks/card), the stored face is a JPEG of at most 192×192 (read from its bytes);
// a text file or a broken PNG is refused with a message, a failed upload says so; "Remove
// picture" removes it and keeps the name. Screenshots and axe at both sizes.
import { deflateSync } from "node:zlib";
import { apiAs, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
// An RGB PNG of width × height: a red-to-blue gradient with a green band in the middle third
// (so the centre crop is visible in the screenshots).
export function pngImage(width, height) {
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3); // filter byte 0, then RGB
    for (let x = 0; x < width; x += 1) {
      const middle = x > width / 3 && x < (2 * width) / 3;
      row[1 + x * 3] = Math.round((255 * (width - x)) / width);
      row[2 + x * 3] = middle ? 200 : 40;
      row[3 + x * 3] = Math.round((255 * x) / width);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// The kind and size of a PNG or JPEG, from its bytes.
function imageSize(bytes) {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    return { kind: "png", width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let at = 2;
    while (at + 9 < bytes.length) {
      if (bytes[at] !== 0xff) throw new Error(`JPEG: no marker at ${at}`);
      const marker = bytes[at + 1];
      const length = bytes.readUInt16BE(at + 2);
      // SOF0–SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size.
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { kind: "jpeg", height: bytes.readUInt16BE(at + 5), width: bytes.readUInt16BE(at + 7) };
      }
      at += 2 + length;
    }
    throw new Error("JPEG without a frame header");
  }
  throw new Error(`neither PNG nor JPEG (starts ${bytes.subarray(0, 4).toString("hex")})`);
}

export default async function profileCard({ browser, base, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const cara = { username: "cara", password: "cara's card password" };
  const png = pngImage(400, 300);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`profile-card: ${error.message}`));
  const picture = page.getByLabel("Choose a picture (PNG or JPEG)");
  const preview = page.getByRole("img", { name: "Your current picture" });
  let api;
  try {
    await check("profile card: a user with no device saves a name and a picture, shown at once", async () => {
      expectEqual((await admin("POST", "/api/users", { username: cara.username, password: cara.password })).status, 201, "cara created");
      api = await apiAs(base, cara);
      expectEqual(JSON.stringify((await api("GET", "/api/owntracks/card")).body), '{"name":null,"face":null}', "no card yet");
      await signIn(page, base, cara, "profile");
      await page.getByText("No picture yet.").waitFor({ timeout: 10_000 });
      await page.getByLabel("Display name").fill("Cara C.");
      await page.getByRole("button", { name: "Save name" }).click();
      await page.getByText("Name saved.").waitFor({ timeout: 10_000 });
      await picture.setInputFiles({ name: "cara.png", mimeType: "image/png", buffer: png });
      await page.getByText("Picture saved.").waitFor({ timeout: 10_000 });
      await preview.waitFor({ timeout: 10_000 });
      const src = await preview.getAttribute("src");
      if (!src.startsWith("data:image/jpeg;base64,")) throw new Error(`preview src ${src.slice(0, 40)}`);
    });

    await check("profile card: the stored face is a JPEG of at most 192×192, cropped square", async () => {
      const { status, body } = await api("GET", "/api/owntracks/card");
      expectEqual(status, 200, "GET card");
      expectEqual(body.name, "Cara C.", "name kept with the picture");
      const size = imageSize(Buffer.from(body.face, "base64"));
      expectEqual(size.kind, "jpeg", "stored kind");
      expectEqual(`${size.width}x${size.height}`, "192x192", "stored size (400×300 cropped to 300², shrunk to 192²)");
    });

    await check("profile card: a reload shows the saved name and picture", async () => {
      await page.reload();
      await preview.waitFor({ timeout: 10_000 });
      expectEqual(await page.getByLabel("Display name").inputValue(), "Cara C.", "name after reload");
      await screenshotsAndAxe(page, shots, "profile-card");
    });

    await check("profile card: a text file and a broken PNG are refused; a failed upload says so", async () => {
      const before = (await api("GET", "/api/owntracks/card")).body.face;
      await picture.setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a picture") });
      await page.getByText(/^That file is not a PNG or JPEG picture/).waitFor({ timeout: 10_000 });
      await picture.setInputFiles({ name: "broken.png", mimeType: "image/png", buffer: Buffer.from("\x89PNG but nothing else") });
      await page.getByText(/^That file is not a PNG or JPEG picture/).waitFor({ timeout: 10_000 });
      // The server failing: the message says what failed and why.
      await page.route("**/api/owntracks/card", (route) =>
        route.request().method() === "PUT"
          ? route.fulfill({ status: 500, contentType: "application/json", body: JSON.stringify({ error: "the disk is full" }) })
          : route.continue());
      await picture.setInputFiles({ name: "cara.png", mimeType: "image/png", buffer: png });
      await page.getByText(/^Couldn't save the picture:/).waitFor({ timeout: 10_000 });
      await page.unroute("**/api/owntracks/card");
      expectEqual((await api("GET", "/api/owntracks/card")).body.face, before, "face unchanged");
      await preview.waitFor();
    });

    await check("profile card: Remove picture removes it and keeps the name", async () => {
      await page.getByRole("button", { name: "Remove picture" }).click();
      await page.getByText("Picture removed.").waitFor({ timeout: 10_000 });
      await page.getByText("No picture yet.").waitFor({ timeout: 10_000 });
      const { body } = await api("GET", "/api/owntracks/card");
      expectEqual(JSON.stringify(body), '{"name":"Cara C.","face":null}', "card after removal");
      await page.reload();
      await page.getByText("No picture yet.").waitFor({ timeout: 10_000 });
    });
  } finally {
    await context.close();
  }
}
