// Reference vectors from @openzeppelin/merkle-tree for tests/test_ledger_merkle.py.
// stdin: [{"types": [...], "values": [[...], ...], "multi": [indices]}, ...]
// stdout: for each case, the npm tree's dump, every proof (by value index) and one multiproof.
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { readFileSync } from 'node:fs';

const cases = JSON.parse(readFileSync(0, 'utf8'));
const results = cases.map(({ types, values, multi }) => {
  const tree = StandardMerkleTree.of(values, types);
  const proofs = values.map((_, i) => tree.getProof(i));
  const multiproof = tree.getMultiProof(multi);
  return { root: tree.root, dump: tree.dump(), proofs, multiproof };
});
process.stdout.write(JSON.stringify(results));
