// Module ids by order, not by hashes of module names: the container entry's name holds the
// absolute path of the source, so hashed ids made a build depend on the folder it ran in,
// and CI, which rebuilds this extension in a fresh clone elsewhere, could not reproduce it.
module.exports = {
  optimization: { moduleIds: 'natural', chunkIds: 'natural' }
};
