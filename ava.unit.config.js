export default {
  files: ['dist/test/unit/**/*.test.js'],
  timeout: '60s',
};
