// Compile GliskNFT.sol with the pinned solc (0.8.20, wasm) and OpenZeppelin 5.0.0 from node_modules.
// Usage: node chain/contracts/compile.js [--check]
//   writes chain/contracts/GliskNFT.json; with --check, exits 1 if the committed file differs.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const root = path.resolve(here, "..", "..");
const sourcePath = path.join(here, "GliskNFT.sol");
const artifactPath = path.join(here, "GliskNFT.json");

function findImports(importPath) {
  const candidate = path.join(root, "node_modules", importPath);
  if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  return { error: `not found: ${importPath}` };
}

const input = {
  language: "Solidity",
  sources: { "GliskNFT.sol": { content: fs.readFileSync(sourcePath, "utf8") } },
  settings: {
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(2);
}
const contract = output.contracts["GliskNFT.sol"].GliskNFT;
const artifact = {
  contractName: "GliskNFT",
  compiler: `solc ${solc.version()}`,
  openzeppelin: require(path.join(root, "node_modules", "@openzeppelin", "contracts", "package.json")).version,
  settings: { evmVersion: input.settings.evmVersion, optimizer: input.settings.optimizer },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 2) + "\n";

if (process.argv.includes("--check")) {
  const committed = fs.existsSync(artifactPath) ? fs.readFileSync(artifactPath, "utf8") : "";
  if (committed !== text) {
    console.error("chain/contracts/GliskNFT.json does not match GliskNFT.sol: run `npm run compile`");
    process.exit(1);
  }
  console.log("artifact matches source");
} else {
  fs.writeFileSync(artifactPath, text);
  console.log(`wrote ${path.relative(root, artifactPath)} (${artifact.compiler})`);
}
