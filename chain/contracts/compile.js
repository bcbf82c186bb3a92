// Compile the project's contracts with the pinned solc (0.8.20, wasm) and OpenZeppelin 5.0.0 from
// node_modules, into committed JSON artifacts (ABI + bytecode).
// Usage: node chain/contracts/compile.js [--check]
//   with --check, exits 1 if a committed artifact differs from what its source compiles to.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = path.resolve(__dirname, "..", "..");
// source (relative to the repository) → the contracts it holds, each written to <dir>/<name>.json
const TARGETS = [
  { source: "chain/contracts/GliskNFT.sol", contracts: ["GliskNFT"] },
  { source: "chain/contracts/WalletSignatureCheck.sol", contracts: ["WalletSignatureCheck"] },
  { source: "tests/contracts/TestWallets.sol", contracts: ["TestWallet", "TestWalletFactory"] },
  { source: "glisk/devtools/contracts/FarcasterIdRegistry.sol", contracts: ["FarcasterIdRegistry"] },
];
const SETTINGS = { evmVersion: "shanghai", optimizer: { enabled: true, runs: 200 } };

function findImports(importPath) {
  const candidate = path.join(root, "node_modules", importPath);
  if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  return { error: `not found: ${importPath}` };
}

function compile(target) {
  const name = path.basename(target.source);
  const input = {
    language: "Solidity",
    sources: { [name]: { content: fs.readFileSync(path.join(root, target.source), "utf8") } },
    settings: {
      ...SETTINGS,
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    for (const e of errors) console.error(e.formattedMessage);
    process.exit(2);
  }
  return target.contracts.map((contractName) => {
    const contract = output.contracts[name][contractName];
    const artifact = {
      contractName,
      compiler: `solc ${solc.version()}`,
      openzeppelin: require(path.join(root, "node_modules", "@openzeppelin", "contracts", "package.json")).version,
      settings: SETTINGS,
      abi: contract.abi,
      bytecode: "0x" + contract.evm.bytecode.object,
      deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
    };
    const file = path.join(root, path.dirname(target.source), `${contractName}.json`);
    return { file, text: JSON.stringify(artifact, null, 2) + "\n" };
  });
}

const check = process.argv.includes("--check");
let stale = 0;
for (const target of TARGETS) {
  for (const { file, text } of compile(target)) {
    const shown = path.relative(root, file);
    if (check) {
      const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
      if (committed !== text) {
        console.error(`${shown} does not match ${target.source}: run \`npm run compile\``);
        stale += 1;
      }
    } else {
      fs.writeFileSync(file, text);
      console.log(`wrote ${shown}`);
    }
  }
}
if (check && stale) process.exit(1);
if (check) console.log("artifacts match their sources");
