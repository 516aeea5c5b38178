import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isAppError } from "../../src/errors.js";
import { negotiateFormat, sourceOutputFormat, type SourceFormatInfo } from "../../src/processing/output-format.js";
import {
  canonicalTransformParams,
  isIdentityTransform,
  parseTransformParams,
  variantParams,
} from "../../src/processing/transform-params.js";

function invalidParameter(name: string) {
  return (error: unknown) => {
    assert.ok(isAppError(error), `expected an AppError, got ${String(error)}`);
    assert.equal(error.code, "invalid_parameter");
    assert.equal(error.status, 400);
    assert.match(error.message, new RegExp(`"${name}"`), "the message names the parameter");
    return true;
  };
}

void describe("parseTransformParams", () => {
  void test("reads every parameter", () => {
    assert.deepEqual(
      parseTransformParams({ w: "300", h: "200", fit: "cover", enlarge: "1", format: "webp", q: "70", dpr: "1.5" }),
      { width: 300, height: 200, fit: "cover", enlarge: true, format: "webp", quality: 70, dpr: 1.5 },
    );
  });

  void test("defaults: fit inside, no enlargement, dpr 1, no format or quality", () => {
    assert.deepEqual(parseTransformParams({}), { fit: "inside", enlarge: false, dpr: 1 });
  });

  void test("accepts the bounds of every range", () => {
    for (const side of ["1", "8192"]) {
      assert.equal(parseTransformParams({ w: side }).width, Number(side));
      assert.equal(parseTransformParams({ h: side }).height, Number(side));
    }
    for (const q of ["1", "100"]) assert.equal(parseTransformParams({ q }).quality, Number(q));
    for (const dpr of ["1", "4", "2.25", "3.5"]) assert.equal(parseTransformParams({ w: "10", dpr }).dpr, Number(dpr));
  });

  void test("accepts every fit mode and format, jpg and upper case included", () => {
    for (const fit of ["cover", "contain", "fill", "inside", "outside"]) {
      assert.equal(parseTransformParams({ w: "10", fit }).fit, fit);
    }
    for (const format of ["jpeg", "png", "webp", "avif", "gif", "auto"]) {
      assert.equal(parseTransformParams({ format }).format, format);
    }
    assert.equal(parseTransformParams({ format: "jpg" }).format, "jpeg");
    assert.equal(parseTransformParams({ format: "WebP" }).format, "webp");
  });

  void test("enlarge takes 1/0 and true/false", () => {
    assert.equal(parseTransformParams({ w: "10", enlarge: "true" }).enlarge, true);
    assert.equal(parseTransformParams({ w: "10", enlarge: "0" }).enlarge, false);
    assert.equal(parseTransformParams({ w: "10", enlarge: "false" }).enlarge, false);
  });

  const refusals: Array<[name: string, value: string]> = [
    ["w", "0"],
    ["w", "8193"],
    ["w", "-5"],
    ["w", "abc"],
    ["w", "1.5"],
    ["w", ""],
    ["w", "1e3"],
    ["w", "99999999999"],
    ["h", "0"],
    ["h", "8193"],
    ["h", " 10"],
    ["fit", "crop"],
    ["fit", ""],
    ["enlarge", "yes"],
    ["format", "tiff"],
    ["format", "heif"],
    ["format", "svg"],
    ["q", "0"],
    ["q", "101"],
    ["q", "high"],
    ["dpr", "0"],
    ["dpr", "0.5"],
    ["dpr", "4.01"],
    ["dpr", "5"],
    ["dpr", "1.555"],
    ["dpr", "2x"],
  ];
  for (const [name, value] of refusals) {
    void test(`refuses ${name}=${JSON.stringify(value)} with invalid_parameter naming "${name}"`, () => {
      assert.throws(() => parseTransformParams({ w: "10", [name]: value }), invalidParameter(name));
    });
  }

  void test("refuses a repeated parameter, whose meaning would be ambiguous", () => {
    assert.throws(() => parseTransformParams({ w: ["100", "200"] }), invalidParameter("w"));
  });

  void test("shows at most 40 characters of a bad value back", () => {
    assert.throws(
      () => parseTransformParams({ fit: "x".repeat(10_000) }),
      (error: unknown) => isAppError(error) && error.message.length < 200,
    );
  });

  void test("ignores unknown parameters and the signing parameters", () => {
    const spec = parseTransformParams({ w: "10", sig: "abc", exp: "123", kid: "k1", v: "deadbeef", utm_source: "x" });
    assert.deepEqual(spec, parseTransformParams({ w: "10" }));
  });

  void test("drops fit, enlarge and dpr when there is no box, since they change nothing", () => {
    assert.deepEqual(parseTransformParams({ fit: "cover", enlarge: "1", dpr: "2" }), parseTransformParams({}));
  });
});

void describe("canonicalTransformParams", () => {
  void test("puts parameters in a fixed order whatever order they came in", () => {
    const a = parseTransformParams({ dpr: "2", q: "50", format: "webp", enlarge: "1", fit: "cover", h: "20", w: "10" });
    assert.equal(canonicalTransformParams(a), "w=10&h=20&fit=cover&enlarge=1&format=webp&q=50&dpr=2");
  });

  void test("leaves defaults out, so equal requests share one string", () => {
    const plain = canonicalTransformParams(parseTransformParams({ w: "10" }));
    const explicit = canonicalTransformParams(parseTransformParams({ w: "10", fit: "inside", enlarge: "0", dpr: "1.00" }));
    assert.equal(plain, "w=10");
    assert.equal(explicit, plain);
  });

  void test("normalises number spellings", () => {
    assert.equal(canonicalTransformParams(parseTransformParams({ w: "0300", dpr: "1.50" })), "w=300&dpr=1.5");
    assert.equal(canonicalTransformParams(parseTransformParams({ format: "JPG" })), "format=jpeg");
  });

  void test("parses back to the same spec", () => {
    const queries: Array<Record<string, string>> = [
      { w: "300" },
      { h: "7", fit: "outside", enlarge: "1", dpr: "3.25" },
      { w: "1", h: "8192", fit: "fill", format: "auto", q: "1" },
      { format: "gif" },
      { q: "55" },
    ];
    for (const query of queries) {
      const spec = parseTransformParams(query);
      const again = parseTransformParams(Object.fromEntries(new URLSearchParams(canonicalTransformParams(spec))));
      assert.deepEqual(again, spec, JSON.stringify(query));
    }
  });

  void test("is empty, an identity transform, when nothing is asked", () => {
    assert.equal(canonicalTransformParams(parseTransformParams({ fit: "cover" })), "");
    assert.equal(isIdentityTransform(parseTransformParams({ dpr: "2", other: "1" })), true);
    assert.equal(isIdentityTransform(parseTransformParams({ q: "80" })), false);
    assert.equal(isIdentityTransform(parseTransformParams({ format: "png" })), false);
  });
});

void describe("variantParams", () => {
  void test("names the resolved format, so auto and an explicit request for the same format share a variant", () => {
    const auto = parseTransformParams({ w: "300", format: "auto" });
    const webp = parseTransformParams({ w: "300", format: "webp" });
    const none = parseTransformParams({ w: "300" });
    assert.equal(variantParams(auto, "webp"), "w=300&format=webp");
    assert.equal(variantParams(auto, "webp"), variantParams(webp, "webp"));
    assert.equal(variantParams(none, "webp"), variantParams(webp, "webp"));
    assert.notEqual(variantParams(auto, "avif"), variantParams(auto, "webp"));
  });

  void test("leaves quality out for encoders that ignore it", () => {
    const spec = parseTransformParams({ w: "300", q: "40" });
    assert.equal(variantParams(spec, "png"), "w=300&format=png");
    assert.equal(variantParams(spec, "gif"), "w=300&format=gif");
    assert.equal(variantParams(spec, "jpeg"), "w=300&format=jpeg&q=40");
  });
});

void describe("negotiateFormat", () => {
  const jpeg: SourceFormatInfo = { format: "jpeg", pages: 1, hasAlpha: false };
  const animatedGif: SourceFormatInfo = { format: "gif", pages: 3, hasAlpha: true };
  const chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
  const safari15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";

  void test("auto prefers AVIF, then WebP, then the source format, and always varies on Accept", () => {
    assert.deepEqual(negotiateFormat("auto", jpeg, chrome), { format: "avif", varyAccept: true });
    assert.deepEqual(negotiateFormat("auto", jpeg, safari15), { format: "webp", varyAccept: true });
    assert.deepEqual(negotiateFormat("auto", jpeg, "image/png,image/*;q=0.8,*/*;q=0.5"), { format: "jpeg", varyAccept: true });
    assert.deepEqual(negotiateFormat("auto", jpeg, undefined), { format: "jpeg", varyAccept: true });
  });

  void test("wildcards do not count as accepting AVIF or WebP", () => {
    assert.equal(negotiateFormat("auto", jpeg, "*/*").format, "jpeg");
    assert.equal(negotiateFormat("auto", jpeg, "image/*").format, "jpeg");
  });

  void test("a type refused with q=0 is not chosen; parameters and case are tolerated", () => {
    assert.equal(negotiateFormat("auto", jpeg, "image/avif;q=0, image/webp").format, "webp");
    assert.equal(negotiateFormat("auto", jpeg, "image/avif ; q=0.0,image/webp;q=0").format, "jpeg");
    assert.equal(negotiateFormat("auto", jpeg, "Image/AVIF; q=0.5").format, "avif");
  });

  void test("an animation skips AVIF (sharp cannot animate it) and stays animated as WebP or GIF", () => {
    assert.equal(negotiateFormat("auto", animatedGif, chrome).format, "webp");
    assert.equal(negotiateFormat("auto", animatedGif, "image/avif").format, "gif");
  });

  void test("an explicit format, or none, does not depend on Accept", () => {
    assert.deepEqual(negotiateFormat("png", jpeg, chrome), { format: "png", varyAccept: false });
    assert.deepEqual(negotiateFormat(undefined, jpeg, chrome), { format: "jpeg", varyAccept: false });
  });

  void test("a source transforms cannot write falls back to JPEG, or PNG when it has (or may have) alpha", () => {
    assert.equal(sourceOutputFormat({ format: "tiff", pages: 1, hasAlpha: false }), "jpeg");
    assert.equal(sourceOutputFormat({ format: "tiff", pages: 1, hasAlpha: true }), "png");
    assert.equal(sourceOutputFormat({ format: "heif", pages: 1 }), "png");
    assert.equal(negotiateFormat("auto", { format: "tiff", pages: 1, hasAlpha: false }, "image/png").format, "jpeg");
    for (const format of ["jpeg", "png", "webp", "avif", "gif"] as const) {
      assert.equal(sourceOutputFormat({ format, pages: 1 }), format);
    }
  });
});
