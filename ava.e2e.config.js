// End-to-end tests: real namespaces, OVS, dockerd. Root only; run one file at a time.
export default {
  files: ['dist/test/e2e/**/*.test.js'],
  serial: true,
  concurrency: 1,
  timeout: '5m',
  verbose: true,
};
