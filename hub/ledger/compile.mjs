// Compile hub/ledger/contracts/*.sol with solc-js from node_modules into hub/ledger/artifacts/<Contract>.json.
//
//   node hub/ledger/compile.mjs            write the artifacts
//   node hub/ledger/compile.mjs --out DIR  write them elsewhere (the staleness test compares the two)
//   node hub/ledger/compile.mjs --check    exit 1 if the committed artifacts differ from a fresh compile
//
// Deterministic: sorted inputs, pinned EVM version and optimizer runs, no absolute paths in source unit names.
// `sourcesHash` covers the compiler version, the settings and every source compiled (OpenZeppelin included).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');
const nodeModules = join(repoRoot, 'node_modules');
const require = createRequire(import.meta.url);
const solc = require(join(nodeModules, 'solc'));

const SETTINGS = {
  // cancun: the newest fork that common L2s (and OpenLedger's OP-stack chains) all accept; anvil runs newer ones.
  evmVersion: 'cancun',
  optimizer: { enabled: true, runs: 200 },
  viaIR: false,
  metadata: { bytecodeHash: 'ipfs' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

function parseArgs(argv) {
  const args = { out: join(here, 'artifacts'), check: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') args.out = resolve(argv[++i]);
    else if (argv[i] === '--check') args.check = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return args;
}

// Source unit names: `contracts/X.sol` for ours, `@openzeppelin/...` for node_modules; nothing else resolves.
function readSource(name) {
  if (name.startsWith('@openzeppelin/')) return readFileSync(join(nodeModules, name), 'utf8');
  if (name.startsWith('contracts/') && !name.includes('..')) return readFileSync(join(here, name), 'utf8');
  throw new Error(`import ${name} is outside contracts/ and @openzeppelin/`);
}

function compile() {
  const ours = readdirSync(join(here, 'contracts')).filter((f) => f.endsWith('.sol')).sort();
  const used = new Map();
  const sources = {};
  for (const file of ours) {
    const name = `contracts/${file}`;
    sources[name] = { content: readSource(name) };
    used.set(name, sources[name].content);
  }
  const findImports = (name) => {
    try {
      const content = readSource(name);
      used.set(name, content);
      return { contents: content };
    } catch (err) {
      return { error: String(err.message) };
    }
  };
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) throw new Error(`solc reported ${errors.length} error(s)`);

  const hash = createHash('sha256');
  hash.update(JSON.stringify({ compiler: solc.version(), settings: SETTINGS }));
  for (const name of [...used.keys()].sort()) {
    hash.update(`\n${name}\n`);
    hash.update(createHash('sha256').update(used.get(name)).digest('hex'));
  }
  const sourcesHash = `sha256:${hash.digest('hex')}`;

  const artifacts = {};
  for (const file of ours) {
    const sourceName = `contracts/${file}`;
    for (const [contractName, out] of Object.entries(output.contracts[sourceName] || {})) {
      if (!out.evm.bytecode.object) continue; // interfaces and abstract contracts
      artifacts[contractName] = {
        contractName,
        sourceName,
        compiler: { name: 'solc', version: solc.version(), settings: { ...SETTINGS, outputSelection: undefined } },
        sourcesHash,
        abi: out.abi,
        bytecode: `0x${out.evm.bytecode.object}`,
        deployedBytecode: `0x${out.evm.deployedBytecode.object}`,
      };
    }
  }
  return artifacts;
}

const serialize = (artifact) => `${JSON.stringify(artifact, null, 2)}\n`;

const args = parseArgs(process.argv.slice(2));
const artifacts = compile();
if (args.check) {
  const stale = Object.keys(artifacts).filter((name) => {
    const path = join(here, 'artifacts', `${name}.json`);
    return !existsSync(path) || readFileSync(path, 'utf8') !== serialize(artifacts[name]);
  });
  if (stale.length) {
    console.error(`stale artifacts: ${stale.join(', ')}; run: node hub/ledger/compile.mjs`);
    process.exit(1);
  }
  console.log(`artifacts up to date (${Object.keys(artifacts).length} contracts)`);
} else {
  mkdirSync(args.out, { recursive: true });
  for (const [name, artifact] of Object.entries(artifacts)) writeFileSync(join(args.out, `${name}.json`), serialize(artifact));
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to ${args.out}`);
}
